"""`audit verify-ledger`: re-verify a whole exported ledger, trusting only the genesis.

One streaming pass, block by block, in ledger order, so the first failure found is the
first corrupted place of the ledger:
1. the export's checkpoint is final (a quorum of genesis validators) and covers the export;
2. every record: canonical envelope, genesis signer, Ed25519 signature, body, network and
   author (``ledger.audit_records``; chunks of one entry bundle, optionally in processes);
3. every block: its commit certificate (``consensus.certificate.check_certificate``) names
   its header hash, then ``ChainVerifier`` re-checks the link to the previous block and the
   tree size and root recomputed from the entries;
4. every stored checkpoint is final and has the root of the tree rebuilt at its size;
5. every hash tile equals the tree level rebuilt from the entries.
A block's root is certified by its certificate, so when entries and tiles disagree the
check order tells which was tampered with: a bad entry fails its signature (2) or its
block's root (3); a bad tile fails (5) after its block verified.
Failures name the record index, block height, file and byte offset (``AuditFailure``).

Across membership changes (docs/GOVERNANCE.md) the pass replays the governance records
from the blocks (only blocks holding some are decoded here) with the validators' rules,
block times included, and so learns every membership from the genesis alone: block h's
certificate is checked with the validators in force at h, each checkpoint with those that
sign its size, and each record's key must be one of the membership in force at its index
(workers get the key ranges). The record checks run ahead of the blocks, with the keys
known so far; when a block adopts a new membership, the records after it that were
already checked are re-checked for keys in force, and the record checks resume after them
with the new key ranges (one new checker, or pool, per adoption). The export's own
checkpoint is verified at the end, with the membership that signs its size.

With a membership chain (``chain``, verified from the genesis first) the memberships are
known up front and every replayed adoption must be the chain's, at its tree size, and
every chain transition within the export must happen (a cross-check of both).
"""

from __future__ import annotations

import bisect
import hmac
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from consensus.certificate import CommitCertificate, check_certificate
from consensus.validators import Validator, ValidatorSet
from ledger import merkle
from ledger.audit_records import AgreementSeen, ChunkResult, RecordChecker, RecordChunk
from ledger.blocks import Block, BlockHeader, ChainVerifier
from ledger.checkpoint import Checkpoint
from ledger.errors import FormatError, VerificationError
from ledger.export import CERTIFICATES, CHECKPOINT, CHECKPOINTS, HEADERS, ExportReader, series_path
from ledger.genesis import Genesis, TrustRoot, genesis_hash
from ledger.governance import GovernanceState, GovernanceView, Transition
from ledger.membership_chain import MembershipHistory, verify_chain
from ledger.note import Note
from ledger.receipts import final_checkpoint
from ledger.records import Envelope, Record, decode_body
from ledger.tiles import TILE_HEIGHT, TILE_WIDTH, Tile, tile_of, tiles_for

MAX_LISTED_ANOMALIES = 1000

ChunkMap = Callable[[RecordChecker, Iterable[RecordChunk]], Iterator[ChunkResult]]
Progress = Callable[[int, int], None]


class AuditFailure(VerificationError):
    """The first place where the export does not verify."""


@dataclass
class AuditReport:
    origin: str
    tree_size: int
    height: int
    root: bytes = b""
    tip_time_ms: int = 0
    records: int = 0
    blocks: int = 0
    certificates: int = 0
    checkpoints: int = 0
    hash_tiles: int = 0
    entry_bundles: int = 0
    per_agency: Counter[str] = field(default_factory=Counter)
    per_kind: Counter[str] = field(default_factory=Counter)
    agreements_active: list[AgreementSeen] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    anomaly_count: int = 0
    transitions: list[Transition] = field(default_factory=list)
    """Membership changes replayed from the export's governance records, in order."""
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure


def verify_export(reader: ExportReader, genesis_bytes: bytes, *,
                  map_chunks: ChunkMap = map, progress: Progress | None = None,
                  chain: bytes | None = None) -> AuditReport:
    """Verify everything in ``reader``; the report's ``failure`` is the first problem.
    ``chain``: the membership chain file, needed once governance changed the membership."""
    audit = _Audit(reader, genesis_bytes, progress)
    try:
        audit.use_chain(chain)
        audit.run(map_chunks)
    except VerificationError as exc:
        audit.report.failure = str(exc)
    audit.report.transitions = list(audit.governance.transitions)  # up to a failure
    return audit.report


class _Audit:
    def __init__(self, reader: ExportReader, genesis_bytes: bytes,
                 progress: Progress | None) -> None:
        genesis = Genesis.from_bytes(genesis_bytes)
        self.reader = reader
        self.genesis = genesis
        self.chain_id = genesis_hash(genesis_bytes)
        self.trust = TrustRoot(tuple(genesis.validator_keys), genesis.threshold,
                               genesis.network, genesis.keyring(), self.chain_id)
        self.validators = ValidatorSet(tuple(Validator(v.key.public_key, v.power)
                                             for v in genesis.validators))
        self.checker = RecordChecker.from_genesis(genesis, reader.limits)
        self.history = MembershipHistory.genesis_only(genesis)
        self.keys = self.history.all_keys()
        self.chain_given = False
        self.governance = GovernanceState(self.history.memberships[0])
        self._sets: dict[int, ValidatorSet] = {0: self.validators}
        self._gov_chunks: list[tuple[int, int]] = []  # [first, end) of chunks with some
        self.chain = ChainVerifier(genesis.network, self.chain_id)
        self.tiles = _TileChecker(reader, self._height_of, self.chain.tree)
        self.report = AuditReport(reader.origin, reader.tree_size, reader.height)
        self.progress = progress
        self.pending: list[bytes] = []  # verified envelopes not yet placed in a block
        self.pending_first = 0
        self.next_height = 1
        self.sent: dict[int, tuple[bytes, ...]] = {}  # chunks out to the checker, by index
        self.ids: dict[bytes, int] = {}
        self.agreements: dict[bytes, AgreementSeen] = {}
        self.revoked: set[bytes] = set()
        self._sizes: list[int] = []
        self._learned = False  # a block adopted a membership the record checker lacks
        self._ranges: dict[bytes, list[tuple[int, int]]] | None = None

    def use_chain(self, chain: bytes | None) -> None:
        """Trust the memberships of a membership chain verified from the genesis."""
        if chain is None:
            return
        self._use_history(verify_chain(chain, self.genesis, self.reader.limits))
        self.chain_given = True

    def _use_history(self, history: MembershipHistory) -> None:
        """Check records, certificates and checkpoints with ``history``'s memberships."""
        self.history = history
        self.keys = history.all_keys()
        keys = {(k.key_hash, k.name, k.public_key)
                for m in history.memberships for a in m.agencies for k in a.record_keys}
        self._ranges = history.key_ranges()
        spans = tuple(sorted((h, tuple(r)) for h, r in self._ranges.items()))
        self.checker = RecordChecker(self.genesis.network, tuple(sorted(keys)),
                                     self.reader.limits, spans)

    def _validators_at(self, first_index: int) -> ValidatorSet:
        """The validator set deciding the block whose records start at ``first_index``."""
        number = self.history.number_for_size(first_index + 1)
        found = self._sets.get(number)
        if found is None:
            m = self.history.memberships[number]
            found = ValidatorSet(tuple(Validator(v.key.public_key, v.power)
                                       for v in m.validators))
            self._sets[number] = found
        return found

    # --- the pass ----------------------------------------------------------------------

    def run(self, map_chunks: ChunkMap) -> None:
        self._check_manifest()
        start = 0
        while True:
            results = map_chunks(self.checker, self._chunks(start))
            try:
                for result in results:
                    if self._take(result):
                        break
                else:
                    self._blocks_ready(self.reader.tree_size)
                    if not self._learned:
                        break
            finally:
                close = getattr(results, "close", None)
                if close is not None:
                    close()  # a pool: stop its workers before starting the next one
            start = self._resume()
        if self.next_height <= self.reader.height:
            raise AuditFailure(f"block {self.next_height} ends beyond the exported entries")
        if self.pending:
            raise AuditFailure(f"records {self.pending_first}..{self.reader.tree_size - 1}"
                               " are in no block")
        self.tiles.finish()
        self._check_latest_root()
        self._summarise()

    def _check_manifest(self) -> None:
        reader = self.reader
        if reader.origin != self.genesis.network:
            raise AuditFailure(f"export is of {reader.origin!r}, the genesis is for"
                               f" {self.genesis.network!r}")
        if not hmac.compare_digest(reader.genesis_hash, self.chain_id):
            raise AuditFailure("export was made from a ledger of another genesis")
        note = reader.read(CHECKPOINT)
        if self.chain_given:
            checkpoint, _ = self._final(note, CHECKPOINT)
        else:  # its signers are known once the memberships are replayed (the end)
            try:
                checkpoint = Checkpoint.from_text(Note.from_bytes(note, reader.limits).text,
                                                  reader.limits)
            except FormatError as exc:
                raise AuditFailure(f"{CHECKPOINT}: {exc}") from exc
        if checkpoint.size != reader.tree_size:
            raise AuditFailure(f"{CHECKPOINT} is for tree size {checkpoint.size}, the export"
                               f" holds {reader.tree_size} records")
        self.latest = checkpoint
        self.latest_note = note

    def _chunks(self, start: int = 0) -> Iterator[RecordChunk]:
        """Chunks of the records from index ``start`` on (one per entry bundle)."""
        for tile in tiles_for(self.reader.tree_size):
            if tile.first + tile.width <= start:
                continue
            first = max(tile.first, start)
            try:
                items = self.reader.items("entries", tile)
            except FormatError as exc:
                yield RecordChunk(first, (), f"{exc} (records {tile.first}.."
                                              f"{tile.first + tile.width - 1})")
                continue
            if first == tile.first:  # a resumed bundle was counted the first time
                self.report.entry_bundles += 1
            envelopes = tuple(env for _, env in items[first - tile.first:])
            self.sent[first] = envelopes
            yield RecordChunk(first, envelopes)

    def _resume(self) -> int:
        """After a block adopted a membership the checker did not know: check the records
        after it that were already checked for keys in force, take a checker with the new
        key ranges and return the first record index it must check."""
        start = self.pending_first + len(self.pending)
        self._use_history(self.history)
        self._learned = False
        self.sent.clear()
        for offset, raw in enumerate(self.pending):
            self._check_in_force(self.pending_first + offset, raw)
        return start

    def _check_in_force(self, index: int, raw: bytes) -> None:
        signer = Envelope.split(raw, self.reader.limits)[1]
        assert self._ranges is not None
        if not any(first <= index and (end < 0 or index < end)
                   for first, end in self._ranges.get(signer, ())):
            key = self.keys.get(signer)
            name = f" ({key.name})" if key is not None else ""
            raise AuditFailure(f"{self._where(index)}: record signer {signer[:4].hex()}{name} "
                               "is not a record key of the membership in force at this index")

    def _take(self, result: ChunkResult) -> bool:
        """Take one chunk's results; True: stop, a block adopted a membership the checker
        did not know, resume the record checks (``_resume``)."""
        report = self.report
        for (agency, kind), n in result.counts.items():
            report.per_agency[agency] += n
            report.per_kind[kind] += n
            if kind == "governance":
                self._gov_chunks.append((result.first_index,
                                         result.first_index + result.checked))
        for index, problem in result.anomalies:
            self._anomaly(index, problem)
        self._cross_records(result)
        if result.unreadable:
            self._blocks_ready(result.first_index)
            if self._learned:
                return True
            raise AuditFailure(f"{result.unreadable}, from block"
                               f" {self._height_of(result.first_index)} on")
        self.pending.extend(self.sent.pop(result.first_index)[: result.checked])
        self.report.records += result.checked
        if result.failure is not None:
            index, reason = result.failure
            self._blocks_ready(index)
            if self._learned:  # maybe signed by a key the adoption brought in
                return True
            raise AuditFailure(f"{self._where(index)}: {reason}")
        self._blocks_ready(self.pending_first + len(self.pending))
        return self._learned

    def _cross_records(self, result: ChunkResult) -> None:
        rids, ids = result.record_ids, self.ids
        if ids.keys().isdisjoint(rids) and len(set(rids)) == len(rids):  # no duplicate
            ids.update(zip(rids, range(result.first_index, result.first_index + len(rids)),
                           strict=True))
            rids = []
        for offset, rid in enumerate(rids):
            first = self.ids.setdefault(rid, result.first_index + offset)
            if first != result.first_index + offset:
                raise AuditFailure(f"{self._where(result.first_index + offset)}: record is"
                                   f" a duplicate of record {first}")
        for agreement in result.agreements:
            self.agreements[agreement.record_id] = agreement
        for index, agreement_id in result.event_agreements:
            if agreement_id not in self.agreements:
                self._anomaly(index, "sharing event cites an agreement not recorded before it")
        for rev in result.revocations:
            revoked = self.agreements.get(rev.agreement_id)
            if revoked is None:
                self._anomaly(rev.index, "revocation of an agreement not recorded before it")
            elif rev.agency not in (revoked.provider, revoked.recipient, revoked.agency):
                self._anomaly(rev.index, f"{rev.agency} revokes agreement {revoked.index}"
                                         " it is no party to (ignored)")
            else:
                self.revoked.add(rev.agreement_id)

    # --- blocks ------------------------------------------------------------------------

    def _blocks_ready(self, verified_upto: int) -> None:
        """Check every block whose records are all verified (below ``verified_upto``)."""
        while self.next_height <= self.reader.height:
            height = self.next_height
            header = self._header(height)
            if header.tree_size > verified_upto:
                return
            first = header.tree_size - header.record_count
            if first != self.pending_first:
                raise AuditFailure(f"block {height} starts at record {first}, the chain is at"
                                   f" {self.pending_first}")
            envelopes = tuple(self.pending[: header.record_count])
            block = Block(header, envelopes)
            self._check_certificate(height, block)
            self._replay_governance(height, block)
            leaves = merkle.leaf_hashes(envelopes)
            try:
                self.chain.add(block, leaves)
            except VerificationError as exc:
                raise AuditFailure(f"block {height}: {exc}{self._blame(block)}") from exc
            self.tiles.add(leaves)
            self._check_block_checkpoint(height, header)
            del self.pending[: header.record_count]
            self.pending_first = header.tree_size
            self.report.blocks += 1
            self.report.tip_time_ms = header.time_ms
            self.next_height += 1
            if self.progress is not None:
                self.progress(header.tree_size, self.reader.tree_size)
            if self._learned:  # the records after it were checked with the old keys
                return

    def _replay_governance(self, height: int, block: Block) -> None:
        """Apply the block's governance records; an adoption must be the chain's."""
        header = block.header
        first = header.tree_size - header.record_count
        expired = any(header.time_ms >= p.expires_ms
                      for p in self.governance.pending.values())
        if expired or any(lo < header.tree_size and first < hi for lo, hi in self._gov_chunks):
            view = GovernanceView(self.governance)
            keys = self.keys
            for offset, raw in enumerate(block.envelopes):
                envelope = Envelope.from_bytes(raw, self.reader.limits)
                body = decode_body(envelope.body)
                key = keys.get(envelope.signer)
                if body.WhichOneof("kind") != "governance" or key is None:
                    continue
                try:
                    view.apply(Record(envelope, body, key), header.time_ms)
                except VerificationError as exc:  # the quorum let it in: it changes nothing
                    self._anomaly(first + offset, f"governance record refused: {exc}")
            changes = view.finish(height, header.tree_size, header.time_ms)
            if changes.state is not None:
                self.governance = changes.state
        adopted = len(self.governance.transitions)
        expected = self.history.number_for_size(header.tree_size + 1)
        if adopted == expected:
            if adopted and self.governance.current.hash != self.history.memberships[
                    adopted].hash:
                raise AuditFailure(f"block {height} adopts a membership other than the "
                                   f"membership chain's membership {adopted}")
            return
        if adopted > expected:
            t = self.governance.transitions[-1]
            if not self.chain_given:  # learnt from the replay: in force from block h + 1
                self.history = MembershipHistory((*self.history.memberships, t.membership),
                                                 (*self.history.sizes, t.tree_size))
                self._learned = True
                return
            raise AuditFailure(f"block {height} adopts membership {t.number} at tree size "
                               f"{t.tree_size}, the membership chain has "
                               f"{len(self.history.sizes)} transitions ending at sizes "
                               f"{list(self.history.sizes)}")
        raise AuditFailure(f"the membership chain's transition {expected} at tree size "
                           f"{self.history.sizes[expected - 1]} is not in the ledger (no "
                           f"block up to {height} adopted it)")

    def _header(self, height: int) -> BlockHeader:
        try:
            return BlockHeader.from_bytes(self._item(HEADERS, height)[1])
        except FormatError as exc:
            raise AuditFailure(f"block {height} header ({self._item_place(HEADERS, height)})"
                               f": {exc}") from exc

    def _item(self, series: str, height: int) -> tuple[int, bytes]:
        tile = tile_of(self.reader.height, height - 1)
        return self.reader.items(series, tile)[height - 1 - tile.first]

    def _item_place(self, series: str, height: int) -> str:
        tile = tile_of(self.reader.height, height - 1)
        try:
            offset = self.reader.items(series, tile)[height - 1 - tile.first][0]
        except FormatError:
            return series_path(series, tile)
        return f"{series_path(series, tile)} item at byte {offset}"

    def _check_certificate(self, height: int, block: Block) -> None:
        where = f"block {height} commit certificate ({self._item_place(CERTIFICATES, height)})"
        raw = self._item(CERTIFICATES, height)[1]
        if not raw:
            raise AuditFailure(f"{where}: block {height} has no commit certificate")
        try:
            cert = CommitCertificate.from_bytes(raw)
            first = block.header.tree_size - block.header.record_count
            check_certificate(cert, self._validators_at(first), self.chain_id)
        except VerificationError as exc:
            raise AuditFailure(f"{where}: {exc}") from exc
        if cert.height != height or not hmac.compare_digest(cert.block_id, block.hash):
            raise AuditFailure(f"{where}: it certifies block {cert.height}"
                               f" {cert.block_id.hex()[:16]}, not this block")
        self.report.certificates += 1

    def _check_block_checkpoint(self, height: int, header: BlockHeader) -> None:
        raw = self._item(CHECKPOINTS, height)[1]
        if not raw:
            return
        where = f"checkpoint of block {height} ({self._item_place(CHECKPOINTS, height)})"
        checkpoint, _ = self._final(raw, where)
        if checkpoint.size != header.tree_size:
            raise AuditFailure(f"{where}: it is for tree size {checkpoint.size}, the block"
                               f" ends at {header.tree_size}")
        _same_root(where, checkpoint.root_hash, header.tree_root, header.tree_size)
        self.report.checkpoints += 1

    def _final(self, note: bytes, where: str) -> tuple[Checkpoint, tuple[str, ...]]:
        try:
            return final_checkpoint(note, self.trust, self.reader.limits,
                                    self.history)
        except VerificationError as exc:
            raise AuditFailure(f"{where}: {exc}") from exc

    def _check_latest_root(self) -> None:
        if not self.chain_given:
            self._final(self.latest_note, CHECKPOINT)
        _same_root(CHECKPOINT, self.latest.root_hash, self.chain.tree.root(),
                   self.reader.tree_size)
        self.report.root = self.latest.root_hash
        self.report.checkpoints += 1

    def _blame(self, block: Block) -> str:
        """For a root mismatch: the first record whose entry differs from its tile hash."""
        first = block.header.tree_size - block.header.record_count
        for offset, leaf in enumerate(merkle.leaf_hashes(block.envelopes)):
            try:
                stored = self.reader.tree.leaf(first + offset)
            except (VerificationError, ValueError):
                return ""
            if not hmac.compare_digest(leaf, stored):
                return f"; first differing entry: {self._where(first + offset)}"
        return ""

    # --- places and summary ------------------------------------------------------------

    def _height_of(self, index: int) -> int:
        """Height of the block holding record ``index`` (binary search over headers)."""
        if not self._sizes:
            self._sizes = [self._header(h).tree_size for h in range(1, self.reader.height + 1)]
        return bisect.bisect_right(self._sizes, index) + 1

    def _where(self, index: int) -> str:
        tile = tile_of(self.reader.tree_size, index)
        try:
            offset = self.reader.items("entries", tile)[index - tile.first][0]
            at = f" entry at byte {offset}"
        except FormatError:
            at = ""
        return f"record {index} (block {self._height_of(index)}, {tile.entries_path()}{at})"

    def _anomaly(self, index: int, problem: str) -> None:
        self.report.anomaly_count += 1
        if len(self.report.anomalies) < MAX_LISTED_ANOMALIES:
            self.report.anomalies.append(f"record {index}: {problem}")

    def _summarise(self) -> None:
        report, tip = self.report, self.report.tip_time_ms
        report.hash_tiles = self.tiles.checked
        report.agreements_active = [
            a for rid, a in self.agreements.items()
            if rid not in self.revoked and a.valid_from_ms <= tip < a.valid_until_ms
        ]  # in force as docs/POLICY.md has it: [valid_from, valid_until), never open-ended


def _same_root(where: str, claimed: bytes, rebuilt: bytes, size: int) -> None:
    if not hmac.compare_digest(claimed, rebuilt):
        raise AuditFailure(f"{where}: root {claimed.hex()[:16]}.. at size {size} differs from"
                           f" the root {rebuilt.hex()[:16]}.. of the tree rebuilt from the entries")


class _TileChecker:
    """Rebuilds each tile level from the leaves and compares it with the hash tiles.

    The hashes of tile levels 1.. (subtrees of 256, 65,536 .. leaves) are the nodes the
    chain's ``Frontier`` computes while rebuilding block roots from the same leaves: they
    are taken from it (``Frontier.watch``), not hashed a second time."""

    def __init__(self, reader: ExportReader, height_of: Callable[[int], int],
                 frontier: merkle.Frontier) -> None:
        self.reader = reader
        self.height_of = height_of
        self.levels: list[list[bytes]] = []
        self.done: list[int] = []  # full tiles compared, per level
        self.checked = 0
        self.built = [frontier.watch(TILE_HEIGHT * level)  # from the first leaf on
                      for level in range(1, reader.tree_size.bit_length() // TILE_HEIGHT + 2)]

    def add(self, leaves: list[bytes]) -> None:
        self._push(0, leaves)

    def _push(self, level: int, hashes: list[bytes]) -> None:
        if level == len(self.levels):
            self.levels.append([])
            self.done.append(0)
        buf = self.levels[level]
        buf.extend(hashes)
        while len(buf) >= TILE_WIDTH:
            full = buf[:TILE_WIDTH]
            del buf[:TILE_WIDTH]
            self._compare(Tile(level, self.done[level], TILE_WIDTH), full)
            self.done[level] += 1
            built = self.built[level] if level < len(self.built) else []
            self._push(level + 1, [built.pop(0) if built else merkle.root(full)])

    def finish(self) -> None:
        for level, buf in enumerate(self.levels):
            if buf:
                self._compare(Tile(level, self.done[level], len(buf)), buf)

    def _compare(self, tile: Tile, rebuilt: list[bytes]) -> None:
        try:
            stored = self.reader.tile_hashes(tile)
        except FormatError as exc:
            raise AuditFailure(f"hash tile: {exc}") from exc
        if len(stored) == len(rebuilt) and hmac.compare_digest(b"".join(stored),
                                                               b"".join(rebuilt)):
            self.checked += 1
            return
        for k, (have, want) in enumerate(zip(stored, rebuilt, strict=True)):
            if not hmac.compare_digest(have, want):
                raise AuditFailure(f"{tile.path()} byte {k * 32}: {self._covers(tile, k)}"
                                   " does not match the entries")
        self.checked += 1

    def _covers(self, tile: Tile, k: int) -> str:
        shift = tile.level * TILE_HEIGHT
        lo = (tile.first + k) << shift
        if not shift:
            return f"hash of record {lo} (block {self.height_of(lo)})"
        hi = min(self.reader.tree_size, lo + (1 << shift)) - 1
        return f"hash of records {lo}..{hi} (blocks {self.height_of(lo)}..{self.height_of(hi)})"

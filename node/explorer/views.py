"""The explorer's answers, as JSON-ready dicts: one method per page or endpoint.

Pure reads over a ``LedgerReader`` and the genesis (which names the first signers). Once
governance changed the membership, checkpoints, commit certificates and record signatures
are checked with the membership in force (for the checkpoint's size, the block's height,
the record's index), replayed from the ledger's governance records (``LedgerStats``), and
``/api/membership`` lists the transitions. Every
parameter comes from an untrusted URL, so each is bounded here, and a bad one raises
``FormatError`` (HTTP 400) or ``NotFound`` (HTTP 404) with a message saying what was wrong.
Byte fields are shown as hex; integers beyond what JavaScript holds exactly as strings.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from google.protobuf.message import Message

from consensus.certificate import CommitCertificate, certificate_quorum
from consensus.validators import Validator as ConsensusValidator
from consensus.validators import ValidatorSet
from ledger.blocks import Block
from ledger.checkpoint import Checkpoint, check_checkpoint
from ledger.errors import FormatError, LedgerError, UsageError, VerificationError
from ledger.genesis import Genesis, genesis_hash
from ledger.governance import GovernanceState, Transition
from ledger.membership import Membership
from ledger.membership_chain import build_chain
from ledger.note import Note
from ledger.records import Envelope, decode_body, verify_envelope
from node.explorer.source import LedgerReader
from node.explorer.stats import DAY_MS, AgreementEntry, LedgerStats

JS_SAFE_INT = (1 << 53) - 1
MAX_PAGE = 500
"""Most rows (blocks, records, agreements) in one answer."""
MAX_CHART_DAYS = 366
MAX_CHART_BLOCKS = 2000
CHART_SERIES = 8
"""Pairs drawn separately in the per-day chart; the rest are summed as "other"."""
RECORD_ID_HEX = 64
HEADER_CACHE = 4096
"""Block header views kept in memory: blocks never change, and reading one means reading
(and splitting) the whole block, about 1 ms for 1,000 records."""


class NotFound(LedgerError):
    """The page names a block, record or checkpoint the ledger does not hold."""


@dataclass(frozen=True)
class Page:
    """A bounded window asked for in a URL."""

    offset: int = 0
    limit: int = 50


def hexify(data: bytes) -> str:
    return data.hex()


def js_int(value: int) -> int | str:
    return value if value <= JS_SAFE_INT else str(value)


def message_fields(msg: Message) -> dict[str, Any]:
    """Every field of a record kind (set or not), bytes as hex, repeated as lists."""
    out: dict[str, Any] = {}
    for fd in msg.DESCRIPTOR.fields:
        value = getattr(msg, fd.name)
        if fd.is_repeated:
            out[fd.name] = [_scalar(v) for v in value]
        else:
            out[fd.name] = _scalar(value)
    return out


def _scalar(value: object) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return js_int(value)
    if isinstance(value, Message):
        return message_fields(value)
    return value


def iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, UTC).strftime("%Y-%m-%d")


class Explorer:
    """Answers for the explorer's pages, from a reader and the network's genesis."""

    def __init__(self, reader: LedgerReader, genesis_bytes: bytes) -> None:
        self.reader = reader
        self.genesis: Genesis = Genesis.from_bytes(genesis_bytes)
        self.chain_id = genesis_hash(genesis_bytes)
        self.keyring = self.genesis.keyring()
        self.stats = LedgerStats(governance=GovernanceState(Membership.from_genesis(
            self.genesis)))
        self._validator_names: dict[bytes, str] = {}
        self._validator_by_pub: dict[bytes, str] = {}
        self._record_keys: dict[bytes, str] = {}
        self._named = 0  # memberships whose names are in the maps above
        self._sets: dict[int, ValidatorSet] = {}
        self._name_members()
        self._header_at = lru_cache(maxsize=HEADER_CACHE)(self._read_header_view)

    # --- memberships ---------------------------------------------------------------------

    def _governance(self) -> GovernanceState:
        """The memberships after every committed block (scanning new blocks first)."""
        self.stats.update(self.reader)
        state = self.stats.governance
        assert state is not None
        self._name_members(state)
        return state

    def _name_members(self, state: GovernanceState | None = None) -> None:
        """Names of every validator and record key any membership so far had."""
        memberships = ([Membership.from_genesis(self.genesis)] if state is None else
                       [state.membership(n) for n in range(len(state.transitions) + 1)])
        for m in memberships[self._named:]:
            for v in m.validators:
                self._validator_names.setdefault(v.key.key_hash, v.agency or v.key.name)
                self._validator_by_pub.setdefault(v.key.public_key, v.agency or v.key.name)
            for a in m.agencies:
                for k in a.record_keys:
                    self._record_keys.setdefault(k.key_hash, k.name)
        self._named = max(self._named, len(memberships))

    def _validator_set(self, state: GovernanceState, height: int) -> ValidatorSet:
        number = sum(1 for t in state.transitions if t.from_height <= height)
        found = self._sets.get(number)
        if found is None:
            found = ValidatorSet(tuple(ConsensusValidator(v.key.public_key, v.power)
                                       for v in state.membership(number).validators))
            self._sets[number] = found
        return found

    def membership(self) -> dict[str, Any]:
        """The membership in force, every transition and the pending proposals."""
        state = self._governance()
        current = state.current
        return {
            "number": len(state.transitions),
            "hash": hexify(current.hash),
            "approvals": current.approvals,
            "validators": [{"name": v.key.name, "agency": v.agency, "power": v.power,
                            "key_id": hexify(v.key.key_id)} for v in current.validators],
            "threshold": current.threshold,
            "agencies": [{"name": a.name, "role": a.role,
                          "record_keys": [k.name + "+" + hexify(k.key_id)
                                          for k in a.record_keys]}
                         for a in current.agencies],
            "transitions": [self._transition_view(state, t) for t in state.transitions],
            "pending": [
                {"proposal_id": hexify(p.proposal_id), "author": p.author,
                 "summary": p.summary, "membership": hexify(p.membership.hash),
                 "expires_ms": js_int(p.expires_ms), "approvers": list(p.approvers),
                 "needed": current.approvals}
                for p in sorted(state.pending.values(), key=lambda p: p.proposal_id)],
            "chain_url": "/api/membership/chain",
        }

    def _transition_view(self, state: GovernanceState, t: Transition) -> dict[str, Any]:
        before, after = state.membership(t.number - 1), t.membership
        old_v = {v.key.key_hash: v.key.name for v in before.validators}
        new_v = {v.key.key_hash: v.key.name for v in after.validators}
        old_k = {k.key_hash: f"{k.name}+{hexify(k.key_id)}"
                 for a in before.agencies for k in a.record_keys}
        new_k = {k.key_hash: f"{k.name}+{hexify(k.key_id)}"
                 for a in after.agencies for k in a.record_keys}
        return {
            "number": t.number, "height": t.from_height - 1, "from_height": t.from_height,
            "tree_size": t.tree_size, "membership": hexify(after.hash),
            "summary": t.summary, "approvers": list(t.approvers),
            "proposal_id": hexify(t.proposal_id),
            "proposal_index": self.reader.index_of(t.proposal_id),
            "validators_added": sorted(new_v[h] for h in new_v.keys() - old_v.keys()),
            "validators_removed": sorted(old_v[h] for h in old_v.keys() - new_v.keys()),
            "record_keys_added": sorted(new_k[h] for h in new_k.keys() - old_k.keys()),
            "record_keys_removed": sorted(old_k[h] for h in old_k.keys() - new_k.keys()),
        }

    def membership_chain(self) -> bytes:
        """The membership chain (docs/GOVERNANCE.md) of the transitions up to the latest
        checkpoint: with a receipt from this explorer, what verify-receipt --chain needs."""
        state = self._governance()
        latest = self.reader.latest_checkpoint()
        size = 0 if latest is None else latest[0]
        within = [t for t in state.transitions if t.tree_size <= size]
        try:
            return build_chain(self.reader, self.genesis.network, within)
        except UsageError as exc:
            raise NotFound(f"the membership chain cannot be built: {exc}") from exc

    # --- overview ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The head and the membership in force (the genesis's until governance changed it)."""
        state = self._governance()
        head = self.reader.head
        current = state.current
        return {
            "network": self.genesis.network,
            "height": head.height,
            "tree_size": head.tree_size,
            "head_hash": hexify(head.hash),
            "membership": len(state.transitions),
            "validators": [
                {"name": v.key.name, "agency": v.agency, "power": v.power}
                for v in current.validators
            ],
            "threshold": current.threshold,
            "agencies": [{"name": a.name, "role": a.role} for a in current.agencies],
        }

    def checkpoint(self) -> dict[str, Any]:
        """The latest stored checkpoint, checked against the genesis: who signed it."""
        latest = self.reader.latest_checkpoint()
        if latest is None:
            raise NotFound("no checkpoint is stored yet (no block has been committed)")
        return self._checkpoint_view(latest[1])

    def checkpoint_note(self) -> bytes:
        latest = self.reader.latest_checkpoint()
        if latest is None:
            raise NotFound("no checkpoint is stored yet (no block has been committed)")
        return latest[1]

    def _checkpoint_view(self, note_bytes: bytes) -> dict[str, Any]:
        """Checked with the validators of the membership that signs its size."""
        state = self._governance()
        note = Note.from_bytes(note_bytes)
        size = Checkpoint.from_text(note.text).size
        number = sum(1 for t in state.transitions if t.tree_size < size)
        m = state.membership(number)
        keys = m.validator_keys
        result = check_checkpoint(note_bytes, keys, m.threshold, origin=self.genesis.network)
        signed = {k.key_hash for k in result.signed}
        lines = []
        for sig in note.signatures:
            key = next((k for k in keys if k.key_id == sig.key_id
                        and k.name == sig.name), None)
            lines.append({
                "name": sig.name,
                "key_id": hexify(sig.key_id),
                "validator": None if key is None else self._validator_names[key.key_hash],
                "verified": key is not None and key.key_hash in signed,
            })
        cp = result.checkpoint
        return {
            "origin": cp.origin,
            "size": cp.size,
            "root": hexify(cp.root_hash),
            "final": result.verified,
            "membership": number,
            "threshold": result.threshold,
            "signed_by": [self._validator_names[k.key_hash] for k in result.signed],
            "not_signed_by": [self._validator_names[k.key_hash] for k in result.unsigned],
            "signatures": lines,
            "note": note_bytes.decode("utf-8", "replace"),
        }

    # --- blocks ------------------------------------------------------------------------

    def blocks(self, before: int | None, limit: int) -> dict[str, Any]:
        """Newest first: blocks ``before - 1`` down, at most ``limit`` of them."""
        self._governance()  # names of validators that later memberships brought in
        head = self.reader.head.height
        if before is not None:
            _bounded("before", before, 2, JS_SAFE_INT)
        top = head if before is None else min(before - 1, head)
        limit = _bounded("limit", limit, 1, MAX_PAGE)
        heights = range(top, max(0, top - limit), -1)
        rows = [dict(self._header_at(h)) for h in heights]
        last = heights[-1] if rows else 1
        return {"head": head, "blocks": rows, "next_before": last if last > 1 else None}

    def _read_header_view(self, height: int) -> dict[str, Any]:
        return self._header_view(self.reader.block(height))

    def _header_view(self, block: Block) -> dict[str, Any]:
        h = block.header
        return {
            "height": h.height,
            "hash": hexify(block.hash),
            "prev_hash": hexify(h.prev_hash),
            "time_ms": h.time_ms,
            "time": datetime.fromtimestamp(h.time_ms / 1000, UTC).isoformat(),
            "record_count": h.record_count,
            "tree_size": h.tree_size,
            "tree_root": hexify(h.tree_root),
            "proposer": self._validator_names.get(h.proposer, hexify(h.proposer[:4])),
        }

    def block(self, height: int, page: Page) -> dict[str, Any]:
        head = self.reader.head.height
        if not 1 <= height <= head:
            raise NotFound(f"no block at height {height}: heights run from 1 to {head}")
        block = self.reader.block(height)
        self._governance()
        view = self._header_view(block)
        first = block.header.tree_size - block.header.record_count
        offset = _bounded("offset", page.offset, 0, max(0, len(block.envelopes)))
        limit = _bounded("limit", page.limit, 1, MAX_PAGE)
        window = block.envelopes[offset : offset + limit]
        view["records"] = [
            self._record_summary(raw, first + offset + i) for i, raw in enumerate(window)
        ]
        view["offset"] = offset
        view["certificate"] = self._certificate_view(self.reader.certificate(height), height)
        checkpoint = self.reader.checkpoint(block.header.tree_size)
        view["checkpoint"] = None if checkpoint is None else self._checkpoint_view(checkpoint)
        return view

    def _certificate_view(self, raw: bytes | None, height: int) -> dict[str, Any] | None:
        """Checked with the validators of the membership in force at ``height``."""
        if not raw:
            return None
        try:
            cert = CommitCertificate.from_bytes(raw)
        except VerificationError as exc:
            return {"error": f"certificate does not parse: {exc}"}
        state = self._governance()
        quorum = certificate_quorum(cert, self._validator_set(state, height), self.chain_id)
        return {
            "membership": sum(1 for t in state.transitions if t.from_height <= height),
            "round": cert.round,
            "block_id": hexify(cert.block_id),
            "signed_by": sorted(self._validator_by_pub.get(k, hexify(k[:4]))
                                for k in quorum.signers),
            "power": quorum.signed_power,
            "threshold": quorum.threshold,
            "ok": quorum.ok,
        }

    def _record_summary(self, raw: bytes, index: int) -> dict[str, Any]:
        try:
            env = Envelope.from_bytes(raw)
            body = decode_body(env.body)
        except FormatError as exc:
            return {"index": index, "kind": "undecodable", "agency": "", "error": str(exc)}
        return {
            "index": index,
            "record_id": hexify(env.record_id),
            "kind": body.WhichOneof("kind"),
            "agency": body.agency,
            "created_ms": js_int(body.created_ms),
        }

    # --- records -----------------------------------------------------------------------

    def record(self, index: int) -> dict[str, Any]:
        raw = self.envelope(index)
        env = Envelope.from_bytes(raw)
        body = decode_body(env.body)
        kind = body.WhichOneof("kind") or ""
        state = self._governance()
        number = sum(1 for t in state.transitions if t.tree_size <= index)
        try:  # with the record keys of the membership in force when it was committed
            verify_envelope(env, state.membership(number).keyring(), self.genesis.network)
            signature = "valid"
        except VerificationError as exc:
            signature = f"INVALID: {exc}"
            if env.signer in self._record_keys:
                signature += f" (not a record key of membership {number}, in force here)"
        name = self._record_keys.get(env.signer)
        return {
            "index": index,
            "height": self.height_of(index),
            "record_id": hexify(env.record_id),
            "leaf_hash": hexify(env.leaf_hash),
            "kind": kind,
            "agency": body.agency,
            "network": body.network,
            "created_ms": js_int(body.created_ms),
            "nonce": hexify(body.nonce),
            "signer": name if name is not None else hexify(env.signer[:4]),
            "signature": signature,
            "membership": number,
            "fields": message_fields(getattr(body, kind)) if kind else {},
            "receipt_url": f"/api/records/{index}/receipt",
            "envelope_url": f"/api/records/{index}/envelope",
        }

    def envelope(self, index: int) -> bytes:
        size = self.reader.head.tree_size
        if not 0 <= index < size:
            raise NotFound(f"no record at index {index}: the ledger holds {size} records"
                           f" (indexes 0..{size - 1})")
        return self.reader.record(index)

    def index_of(self, record_id_hex: str) -> int:
        if len(record_id_hex) != RECORD_ID_HEX:
            raise FormatError(f"a record id is {RECORD_ID_HEX} hex digits, got"
                              f" {len(record_id_hex)}")
        try:
            rid = bytes.fromhex(record_id_hex)
        except ValueError as exc:
            raise FormatError(f"record id is not hex: {exc}") from exc
        index = self.reader.index_of(rid)
        if index is None:
            raise NotFound(f"no record with id {record_id_hex}")
        return index

    def receipt(self, index: int) -> bytes:
        """A C2SP tlog-proof@v1 against the latest checkpoint covering the record."""
        self.envelope(index)
        latest = self.reader.latest_checkpoint()
        if latest is None or latest[0] <= index:
            raise NotFound(f"record {index} is not covered by a final checkpoint yet")
        return self.reader.receipt(index, latest[0])

    def height_of(self, index: int) -> int | None:
        self.stats.update(self.reader)
        height = bisect_right(self.stats.block_ends, index) + 1
        return height if height <= self.stats.height else None

    # --- agreements and charts ---------------------------------------------------------

    def agreements(self, page: Page, now_ms: int) -> dict[str, Any]:
        self.stats.update(self.reader)
        entries = sorted(self.stats.agreements.values(), key=lambda a: a.index, reverse=True)
        offset = _bounded("offset", page.offset, 0, max(0, len(entries)))
        limit = _bounded("limit", page.limit, 1, MAX_PAGE)
        return {
            "total": len(entries),
            "offset": offset,
            "agreements": [_agreement_view(a, now_ms) for a in entries[offset : offset + limit]],
        }

    def records_per_day(self, days: int) -> dict[str, Any]:
        """Sharing events per provider->recipient pair and anchors per agency, per day."""
        days = _bounded("days", days, 1, MAX_CHART_DAYS)
        self.stats.update(self.reader)
        if not self.stats.block_times:
            return {"days": [], "series": []}
        last = self.stats.block_times[-1] // DAY_MS
        window = list(range(last - days + 1, last + 1))
        totals: Counter[str] = Counter()
        for (day, series), n in self.stats.per_day.items():
            if day >= window[0]:
                totals[series] += n
        named = [s for s, _ in totals.most_common(CHART_SERIES)]
        counts = {s: [0] * days for s in [*named, "other"]}
        for (day, series), n in self.stats.per_day.items():
            if day >= window[0]:
                counts[series if series in named else "other"][day - window[0]] += n
        series_out = [{"name": s, "counts": c} for s, c in counts.items() if any(c)]
        return {"days": [iso_day(d) for d in window], "series": series_out}

    def commit_latency(self, blocks: int) -> dict[str, Any]:
        """Time between consecutive blocks (each block's time is its proposer's clock)."""
        blocks = _bounded("blocks", blocks, 1, MAX_CHART_BLOCKS)
        self.stats.update(self.reader)
        times, ends = self.stats.block_times, self.stats.block_ends
        start = max(1, len(times) - blocks)
        points = [
            {"height": i + 1, "interval_ms": times[i] - times[i - 1],
             "records": ends[i] - ends[i - 1]}
            for i in range(start, len(times))
        ]
        intervals = sorted(p["interval_ms"] for p in points)
        median = intervals[len(intervals) // 2] if intervals else None
        return {"points": points, "median_ms": median}


def _agreement_view(a: AgreementEntry, now_ms: int) -> dict[str, Any]:
    if a.revoked_index is not None:
        state = "revoked"
    elif now_ms >= a.valid_until_ms:  # the policy (docs/POLICY.md): every agreement ends
        state = "expired"
    elif now_ms < a.valid_from_ms:
        state = "not yet in force"
    else:
        state = "active"
    return {
        "record_id": hexify(a.record_id), "index": a.index, "height": a.height,
        "author": a.author, "provider": a.provider, "recipient": a.recipient,
        "datasets": list(a.datasets), "purpose": a.purpose, "legal_basis": a.legal_basis,
        "valid_from_ms": js_int(a.valid_from_ms), "valid_until_ms": js_int(a.valid_until_ms),
        "revoked": a.revoked_index is not None, "revoked_index": a.revoked_index,
        "revoked_reason": a.revoked_reason, "revoked_by": a.revoked_by, "state": state,
    }


def _bounded(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise FormatError(f"{name} must be between {low} and {high}, got {value}")
    return value

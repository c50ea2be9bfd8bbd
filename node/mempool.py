"""Pending records: verified once, de-duplicated, bounded, handed out in arrival order.

Every record is signature-checked exactly once per node, when it first arrives (from a
client or from a peer's gossip); blocks built or validated later use the cached verdict
instead of checking again (DESIGN.md, performance approach).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ledger import merkle
from ledger.errors import LedgerError
from ledger.limits import Limits
from ledger.policy import PolicyFacts, facts_of
from ledger.records import Envelope, Keyring, Record, verify_envelope
from node.priority import PRIORITY


class MempoolFull(Exception):
    """Back-pressure: the mempool is at its bound; the client should retry later."""


class DuplicateRecord(Exception):
    """The record is already pending or already on the ledger."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class MempoolConfig:
    max_records: int = 100_000
    max_bytes: int = 256 << 20
    recent_removed: int = 16_384
    """Ids of records removed for a decided block, remembered until the block is surely
    on disk: a late gossip copy or a client's retry is refused, not queued again."""


class Mempool:
    """Thread-safe: gRPC handler threads add, the consensus thread takes and removes."""

    def __init__(
        self,
        network: str,
        keyring: Keyring,
        limits: Limits,
        config: MempoolConfig,
        committed_index: Callable[[bytes], int | None],
        committed_indices: Callable[[Sequence[bytes]], list[int | None]] | None = None,
        on_check: Callable[[], None] = lambda: None,
    ) -> None:
        self._network = network
        self._on_check = on_check
        """Called once per record signature checked (the node's metrics count them)."""
        self._keyring = keyring
        self._limits = limits
        self._config = config
        self._committed_index = committed_index
        self._committed_indices = committed_indices or (
            lambda rids: [committed_index(rid) for rid in rids])
        self._pending: OrderedDict[bytes, Envelope] = OrderedDict()
        self._bytes = 0
        # leaf hash -> (record id, policy facts) of envelopes whose signature verified: a
        # block's records are recognised by hashing their bytes, without parsing,
        # verifying or decoding them again.
        self._verified: OrderedDict[bytes, tuple[bytes, PolicyFacts]] = OrderedDict()
        self._removed: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def set_keyring(self, keyring: Keyring) -> None:
        """Governance changed the record keys (rotation, agency added or removed): verify
        new records with ``keyring``. Pending records whose signing key is no longer
        trusted as it was are dropped (a block of the new membership may not carry them;
        their submitters' waits time out); cached verdicts are kept only for the pending
        records that stay. No signature is checked again here (runs on the consensus
        thread)."""
        with self._lock:
            old, self._keyring = self._keyring, keyring
            kept: OrderedDict[bytes, tuple[bytes, PolicyFacts]] = OrderedDict()
            for rid, envelope in list(self._pending.items()):
                if keyring.get(envelope.signer) != old.get(envelope.signer):
                    del self._pending[rid]
                    self._bytes -= len(envelope.raw)
                    continue
                verdict = self._verified.get(envelope.leaf_hash)
                if verdict is not None:
                    kept[envelope.leaf_hash] = verdict
            self._verified = kept

    def check(self, raw: bytes) -> Record:
        """Parse and verify a record (no state change); raise a ``VerificationError``.
        Bulk work: waits while the consensus thread runs a critical step."""
        PRIORITY.yield_to()
        envelope = Envelope.from_bytes(raw, self._limits)
        self._on_check()
        return verify_envelope(envelope, self._keyring, self._network)

    def add(self, raw: bytes, checked: Record | None = None) -> Record:
        """Verify (unless ``checked`` is the result of ``check(raw)``) and queue a record.

        Raises ``VerificationError`` (bad record), ``DuplicateRecord``, ``MempoolFull``.
        """
        record = checked if checked is not None else self.check(raw)
        rid = record.record_id
        index = self._committed_index(rid)
        if index is not None:
            raise DuplicateRecord(f"record {rid.hex()[:16]} is already committed", index)
        self._queue(record)
        return record

    def _queue(self, record: Record) -> None:
        with self._lock:
            self._insert(record.envelope)
            self._remember_verified(record)

    def _insert(self, envelope: Envelope) -> None:
        """Queue a verified envelope (hold the lock); raise ``DuplicateRecord`` or
        ``MempoolFull``."""
        self._refuse_known(envelope.record_id)
        self._check_room(len(envelope.raw))
        self._pending[envelope.record_id] = envelope
        self._bytes += len(envelope.raw)
        self.arrived.notify_all()

    def add_gossiped(self, raws: Sequence[bytes]) -> tuple[int, list[LedgerError]]:
        """A batch of records a peer gossiped: (how many were queued, the bad ones' errors).

        Unlike ``add``, duplicates are recognised *before* the signature check: under load
        a block often brings a record before the gossip copy does, and checking that copy
        again (an Ed25519 verification, the costliest step per record) is wasted. Known
        records and those that do not fit (``MempoolFull``: gossip is best effort, they
        come back in blocks) are skipped; the committed index is read once per batch.
        """
        errors: list[LedgerError] = []
        envelopes: list[Envelope] = []
        for raw in raws:
            try:
                envelopes.append(Envelope.from_bytes(raw, self._limits))
            except LedgerError as exc:
                errors.append(exc)
        with self._lock:
            fresh = [e for e in envelopes
                     if e.record_id not in self._pending and e.record_id not in self._removed]
        queued = 0
        committed = self._committed_indices([e.record_id for e in fresh])
        for envelope, index in zip(fresh, committed, strict=True):
            if index is not None:
                continue
            PRIORITY.yield_to()  # bulk work: consensus steps first
            try:
                if self._queue_verified(envelope):
                    queued += 1
                    continue
                self._on_check()
                self._queue(verify_envelope(envelope, self._keyring, self._network))
            except (DuplicateRecord, MempoolFull):
                continue
            except LedgerError as exc:
                errors.append(exc)
                continue
            queued += 1
        return queued, errors

    def _queue_verified(self, envelope: Envelope) -> bool:
        """Queue ``envelope`` without a signature check if these very bytes verified here
        already (a proposed block brought them before their gossip: the block may not be
        decided, so the record must wait here like any other). False if never verified."""
        with self._lock:
            if envelope.leaf_hash not in self._verified:
                return False
            self._insert(envelope)
        return True

    def _refuse_known(self, rid: bytes) -> None:
        if rid in self._pending:
            raise DuplicateRecord(f"record {rid.hex()[:16]} is already pending")
        if rid in self._removed:
            raise DuplicateRecord(f"record {rid.hex()[:16]} is already in a decided block")

    def _check_room(self, size: int) -> None:
        if len(self._pending) >= self._config.max_records:
            raise MempoolFull(f"mempool holds {len(self._pending)} records, its limit")
        if self._bytes + size > self._config.max_bytes:
            raise MempoolFull(f"mempool holds {self._bytes} bytes, its limit")

    def _remember_verified(self, record: Record) -> None:
        # Bounded like the mempool itself: entries leave when their record is committed
        # (``remove``); the bound only evicts verdicts for records never committed.
        self._verified[record.envelope.leaf_hash] = (record.record_id, facts_of(record))
        while len(self._verified) > self._config.max_records:
            self._verified.popitem(last=False)

    def take(self, max_records: int, max_bytes: int) -> list[Envelope]:
        """The oldest pending records that fit a block (they stay pending until committed)."""
        out: list[Envelope] = []
        total = 0
        with self._lock:
            for envelope in self._pending.values():
                if len(out) >= max_records or total + len(envelope.raw) > max_bytes:
                    break
                out.append(envelope)
                total += len(envelope.raw)
        return out

    def remove(self, record_ids: Iterable[bytes], leaf_hashes: Iterable[bytes] = (),
               decided: bool = False) -> None:
        """Drop records that were committed or refused, and their cached verdicts (the
        ledger's record-id index refuses committed ones from now on). ``decided``: they
        are in a decided block not yet on disk; until it is, they are refused here."""
        with self._lock:
            for rid in record_ids:
                envelope = self._pending.pop(rid, None)
                if envelope is not None:
                    self._bytes -= len(envelope.raw)
                if decided:
                    self._removed[rid] = None
            while len(self._removed) > self._config.recent_removed:
                self._removed.popitem(last=False)
            for leaf in leaf_hashes:
                self._verified.pop(leaf, None)

    def verify_for_block(
        self, raws: Sequence[bytes], check_signatures: bool = True,
        keyring: Keyring | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """(leaf hash, record id) of each record of a proposed or fetched block.

        Records this node verified before cost one hash; others are parsed and verified
        here (raising ``VerificationError`` for a bad one). ``check_signatures=False`` is
        for blocks already decided under a verified quorum certificate (state sync): 2f+1
        validators checked every signature before precommitting, so only parse them.
        ``keyring``: the record keys of the block's height when it is not the current one
        (catch-up across a key rotation); cached verdicts (current keys) are not used then.
        """
        leaves = merkle.leaf_hashes(raws)
        with self._lock:
            known: list[tuple[bytes, PolicyFacts] | None] = (
                [None] * len(leaves) if keyring is not None
                else [self._verified.get(leaf) for leaf in leaves])
        out = []
        for raw, leaf, entry in zip(raws, leaves, known, strict=True):
            if entry is not None:
                out.append((leaf, entry[0]))
                continue
            envelope = Envelope.from_bytes(raw, self._limits)
            if check_signatures:
                self._on_check()
            if check_signatures and keyring is not None:
                verify_envelope(envelope, keyring, self._network)
            elif check_signatures:
                record = verify_envelope(envelope, self._keyring, self._network)
                with self._lock:
                    self._remember_verified(record)
            out.append((leaf, envelope.record_id))
        return out

    def facts(self, leaf_hash: bytes) -> PolicyFacts | None:
        """The policy facts of a record this node verified (None if unknown or evicted)."""
        entry = self._verified.get(leaf_hash)
        return None if entry is None else entry[1]

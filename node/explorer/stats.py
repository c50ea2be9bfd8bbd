"""Figures that need a pass over the whole ledger, kept up to date incrementally.

Agreements (with their revocations), records per day per agency pair, block times and the
memberships (governance records replayed with the validators' rules, docs/GOVERNANCE.md,
the same for a live store and an export) cannot be read from one key of the store, so
``LedgerStats.update`` scans only the blocks committed since its last call. The first call
on a large ledger reads every block once; later calls cost one block read per new block.
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger.errors import LedgerError
from ledger.governance import GovernanceState, GovernanceView
from ledger.records import Envelope, Record, decode_body
from proto import ledger_pb2

if TYPE_CHECKING:
    from node.explorer.source import LedgerReader

DAY_MS = 86_400_000


@dataclass
class AgreementEntry:
    """One sharing agreement as committed, and its revocation when there is one."""

    record_id: bytes
    index: int
    height: int
    author: str
    provider: str
    recipient: str
    datasets: tuple[str, ...]
    purpose: str
    legal_basis: str
    valid_from_ms: int
    valid_until_ms: int
    revoked_index: int | None = None
    revoked_reason: str = ""
    revoked_by: str = ""


@dataclass
class LedgerStats:
    """Incremental aggregates; ``update`` is safe to call from several threads."""

    height: int = 0
    block_ends: array[int] = field(default_factory=lambda: array("q"))
    """Tree size after each block (index = height - 1): record index -> block by bisection."""
    block_times: array[int] = field(default_factory=lambda: array("q"))
    per_day: Counter[tuple[int, str]] = field(default_factory=Counter)
    """(day number since the epoch, series) -> records; series "provider->recipient" for
    sharing events, "anchor: agency" for anchors."""
    kinds: Counter[str] = field(default_factory=Counter)
    agreements: dict[bytes, AgreementEntry] = field(default_factory=dict)
    governance: GovernanceState | None = None
    """Memberships after the blocks scanned (None: not followed); start it at the genesis."""
    governance_refused: int = 0
    """Committed governance records the replay refused (none on a sound ledger)."""
    _pending_revocations: dict[bytes, tuple[int, str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, reader: LedgerReader) -> int:
        """Scan blocks committed since the last call; return the height now covered."""
        with self._lock:
            head = reader.head.height
            for height in range(self.height + 1, head + 1):
                self._add_block(reader, height)
            return self.height

    def _add_block(self, reader: LedgerReader, height: int) -> None:
        block = reader.block(height)
        h = block.header
        first = h.tree_size - h.record_count
        day = h.time_ms // DAY_MS
        governance: list[tuple[Envelope, ledger_pb2.RecordBody]] = []
        for offset, raw in enumerate(block.envelopes):
            found = self._add_record(raw, first + offset, height, day)
            if found is not None:
                governance.append(found)
        if self.governance is not None and (governance or any(
                h.time_ms >= p.expires_ms for p in self.governance.pending.values())):
            self._replay(governance, height, h.time_ms, h.tree_size)
        self.block_ends.append(h.tree_size)
        self.block_times.append(h.time_ms)
        self.height = height

    def _replay(self, records: list[tuple[Envelope, ledger_pb2.RecordBody]], height: int,
                time_ms: int, tree_size: int) -> None:
        assert self.governance is not None
        view = GovernanceView(self.governance)
        keyring = view.current.keyring()
        for env, body in records:
            key = keyring.get(env.signer)
            try:
                if key is None:
                    raise LedgerError("signer is not a record key of the membership in force")
                view.apply(Record(env, body, key), time_ms)
            except LedgerError:
                self.governance_refused += 1
        changes = view.finish(height, tree_size, time_ms)  # expired proposals pruned
        if changes.state is not None:
            self.governance = changes.state

    def _add_record(self, raw: bytes, index: int, height: int, day: int
                    ) -> tuple[Envelope, ledger_pb2.RecordBody] | None:
        try:
            env = Envelope.from_bytes(raw)
            body = decode_body(env.body)
        except LedgerError:
            self.kinds["undecodable"] += 1  # committed, so verified once: count, never hide
            return None
        kind = body.WhichOneof("kind") or ""
        self.kinds[kind] += 1
        if kind == "governance":
            return env, body
        if kind == "sharing_event":
            event = body.sharing_event
            self.per_day[(day, f"{event.provider}->{event.recipient}")] += 1
        elif kind == "anchor":
            self.per_day[(day, f"anchor: {body.agency}")] += 1
        elif kind == "agreement":
            a = body.agreement
            rid = env.record_id
            self.agreements[rid] = AgreementEntry(
                rid, index, height, body.agency, a.provider, a.recipient, tuple(a.datasets),
                a.purpose, a.legal_basis, a.valid_from_ms, a.valid_until_ms,
            )
            self._apply_revocation(rid)
        elif kind == "revocation":
            target = bytes(body.revocation.agreement_id)
            revocation = (index, body.revocation.reason, body.agency)
            self._pending_revocations.setdefault(target, revocation)
            self._apply_revocation(target)
        return None

    def _apply_revocation(self, rid: bytes) -> None:
        entry = self.agreements.get(rid)
        pending = self._pending_revocations.get(rid)
        if entry is not None and pending is not None and entry.revoked_index is None:
            entry.revoked_index, entry.revoked_reason, entry.revoked_by = pending

"""``shadowledger reconcile``: compare an authoritative table with what the ledger holds.

1. The ledger view: every anchor record the mirror state lists for the source is fetched
   with a verified read (inclusion proof against a quorum-signed checkpoint, consistent
   with the last trusted one; the record's signature by the agency). For each key
   pseudonym the row of the latest record wins. The state is only an index of records:
   a state row that disagrees with the ledger is itself reported (``state-mismatch``).
2. The table is read once and every row hashed locally (``ledger.anchors``, same keys as
   the mirror) by a child process (``node/scan.py``) that starts at once, so hashing
   runs on another core while step 1 runs; then compared with the ledger view: a
   different commitment is ``changed``, an unknown pseudonym ``unanchored``; ledger rows
   never seen are ``deleted``.
3. Every finding that concerns an anchored row names the record holding it; that record's
   envelope and tlog-proof receipt are written to the evidence folder, where
   ``shadowledger audit verify-receipt`` checks them offline.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.anchors import Row, RowKeys, anchored_rows, findings_digest
from ledger.errors import VerificationError
from ledger.records import sign_record
from node.client import Ack, LedgerClient, VerifiedRecord
from node.mirror import Writer, identity
from node.mirror_state import MirrorState
from node.progress import progress_bar
from node.scan import DIGESTS, ScanBatch, ScanProcess
from node.sources import Source, TableSpec
from proto import ledger_pb2

KINDS = ("changed", "deleted", "unanchored", "state-mismatch")


@dataclass(frozen=True)
class Finding:
    kind: str
    key_pseudonym: bytes
    key: str | None = None
    """The row key, when the row is still in the source (it never goes on the ledger)."""
    anchored_version: str | None = None
    current_version: str | None = None
    record_index: int | None = None
    """Ledger index of the anchor record holding the anchored version."""

    def line(self) -> bytes:
        """The finding as committed to the ledger: pseudonymous, no row key."""
        return json.dumps([self.kind, self.key_pseudonym.hex(), self.anchored_version,
                           self.current_version, self.record_index]).encode()

    def to_json(self, evidence: Path | None) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "key": self.key,
                               "key_pseudonym": self.key_pseudonym.hex(),
                               "anchored_version": self.anchored_version,
                               "current_version": self.current_version,
                               "record_index": self.record_index}
        if evidence is not None and self.record_index is not None:
            out["record"] = str(evidence / f"record-{self.record_index}.envelope")
            out["receipt"] = str(evidence / f"record-{self.record_index}.tlog-proof")
        return out


@dataclass
class ReconcileReport:
    source: str
    table: str
    rows_checked: int = 0
    records_verified: int = 0
    ledger_rows: int = 0
    tree_size: int = 0
    findings: dict[str, list[Finding]] = field(
        default_factory=lambda: {kind: [] for kind in KINDS})
    evidence: Path | None = None
    seconds: float = 0.0
    ledger_seconds: float = 0.0
    """Of ``seconds``: fetching and verifying the anchor records."""
    committed_index: int | None = None

    def count(self, kind: str) -> int:
        return len(self.findings[kind])

    @property
    def findings_commitment(self) -> bytes:
        return findings_digest(f.line() for kinds in self.findings.values() for f in kinds)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "table": self.table, "rows_checked": self.rows_checked,
            "anchor_records_verified": self.records_verified, "ledger_rows": self.ledger_rows,
            "ledger_tree_size": self.tree_size,
            "counts": {kind: self.count(kind) for kind in KINDS},
            "findings_commitment": self.findings_commitment.hex(),
            "reconciliation_record_index": self.committed_index,
            "seconds": round(self.seconds, 3), "ledger_seconds": round(self.ledger_seconds, 3),
            "findings": {kind: [f.to_json(self.evidence) for f in found]
                         for kind, found in self.findings.items()},
        }


_INDEX = 6  # bytes of a record index appended to a commitment in the ledger view


class LedgerView:
    """The anchored rows as the ledger holds them: pseudonym -> commitment || record index,
    the latest record winning. A dict (about 200 bytes per row) so that comparing a
    million-row table costs one lookup per row, not one query."""

    def __init__(self) -> None:
        self._rows: dict[bytes, bytes] = {}
        self._index: dict[bytes, int] = {}

    def add(self, index: int, rows: Iterable[Row]) -> None:
        tag = index.to_bytes(_INDEX, "big")
        for nym, _, commit in rows:
            old = self._rows.get(nym)
            if old is None or old[-_INDEX:] < tag:
                self._rows[nym] = commit + tag

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, nym: bytes) -> tuple[bytes, int] | None:
        held = self._rows.get(nym)
        return None if held is None else (held[:-_INDEX], _index_of(held))

    def take(self, nym: bytes) -> bytes | None:
        """The row's commitment || record index, and forget it: what is left at the end
        was deleted (no tuple per row: this runs once per row of the table)."""
        return self._rows.pop(nym, None)

    def remaining(self) -> list[tuple[bytes, int]]:
        return sorted((nym, _index_of(held)) for nym, held in self._rows.items())


def _index_of(held: bytes) -> int:
    return int.from_bytes(held[-_INDEX:])


@dataclass
class _Raw:
    """Findings before the anchored versions are read back from their records."""

    changed: list[tuple[str, bytes, str, int]] = field(default_factory=list)
    unanchored: list[tuple[str, bytes, str]] = field(default_factory=list)
    deleted: list[tuple[bytes, int]] = field(default_factory=list)
    mismatch: list[tuple[bytes, str | None, int | None]] = field(default_factory=list)

    def indices(self) -> set[int]:
        return ({i for *_, i in self.changed} | {i for _, i in self.deleted}
                | {i for _, _, i in self.mismatch if i is not None})


class Reconciler:
    def __init__(self, client: LedgerClient, writer: Writer, state: MirrorState,
                 keys: RowKeys, quiet: bool = True) -> None:
        self.client = client
        self.writer = writer
        self.state = state
        self.keys = keys
        self.quiet = quiet

    def run(self, db: Source, spec: TableSpec, evidence: Path | None) -> ReconcileReport:
        started = time.monotonic()
        spec = db.resolve(spec)
        self.state.bind(identity(self.writer, self.keys.source, spec.table))
        report = ReconcileReport(self.keys.source, spec.table, evidence=evidence)
        view = LedgerView()
        raw = _Raw()
        total = db.count(spec.table)
        with ScanProcess(db.dsn, spec, self.keys) as scan:  # hashes while we verify
            self._load_ledger(view, report)
            report.ledger_seconds = time.monotonic() - started
            self._check_state(view, raw)
            self._compare(scan.batches(), total, view, raw, report)
        raw.deleted = view.remaining()
        del view
        self._resolve(raw, report, evidence)
        report.seconds = time.monotonic() - started
        return report

    def _fetch(self, index: int) -> VerifiedRecord:
        """A verified read of one of this source's anchor records."""
        verified = self.client.get_record(index=index)
        body = verified.record.body
        if (verified.record.kind != "anchor" or body.agency != self.writer.agency
                or body.anchor.source != self.keys.source):
            raise VerificationError(
                f"the mirror state lists ledger record {index} as an anchor of"
                f" {self.keys.source!r} by {self.writer.agency}, but it is a"
                f" {verified.record.kind} of {body.agency}: the state is not this source's")
        return verified

    def _load_ledger(self, view: LedgerView, report: ReconcileReport) -> None:
        indices = self.state.record_indices()
        bar = progress_bar(len(indices), "verify anchors", self.quiet, unit="record")
        try:
            for index in indices:
                view.add(index, anchored_rows(self._fetch(index).record.body.anchor))
                bar.update(1)
        finally:
            bar.close()
        report.records_verified = len(indices)
        report.ledger_rows = len(view)
        checkpoint = self.client.trusted_checkpoint
        report.tree_size = checkpoint.size if checkpoint is not None else 0

    def _check_state(self, view: LedgerView, raw: _Raw) -> None:
        """Rows the local state and the ledger disagree on, in either direction."""
        matched = 0
        for nym, version, commit, index in self.state.rows():
            held = view.get(nym)
            if held == (commit, index):
                matched += 1
            else:
                raw.mismatch.append((nym, version, held[1] if held else None))
        if matched + sum(1 for m in raw.mismatch if m[2] is not None) < len(view):
            in_state = {nym for nym, *_ in self.state.rows()}
            raw.mismatch += [(nym, None, i) for nym, i in view.remaining()
                             if nym not in in_state]

    def _compare(self, batches: Iterable[ScanBatch], total: int, view: LedgerView,
                 raw: _Raw, report: ReconcileReport) -> None:
        bar = progress_bar(total, f"reconcile {self.keys.source}", self.quiet)
        try:
            for packed, keys, versions in batches:
                for i in range(len(keys)):
                    nym = packed[DIGESTS * i:DIGESTS * i + 32]
                    held = view.take(nym)
                    if held is None:
                        raw.unanchored.append((keys[i], nym, versions[i]))
                    elif held[:32] != packed[DIGESTS * i + 32:DIGESTS * (i + 1)]:
                        raw.changed.append((keys[i], nym, versions[i], _index_of(held)))
                report.rows_checked += len(keys)
                bar.update(len(keys))
        finally:
            bar.close()

    def _resolve(self, raw: _Raw, report: ReconcileReport, evidence: Path | None) -> None:
        """Read the cited records again (verified), take the anchored versions from them
        and write them with their receipts as evidence."""
        versions: dict[tuple[int, bytes], str] = {}
        if evidence is not None:
            evidence.mkdir(parents=True, exist_ok=True)
        for index in sorted(raw.indices()):
            verified = self._fetch(index)
            for nym, version, _ in anchored_rows(verified.record.body.anchor):
                versions[index, nym] = version
            if evidence is not None:
                (evidence / f"record-{index}.envelope").write_bytes(verified.record.envelope.raw)
                (evidence / f"record-{index}.tlog-proof").write_bytes(verified.receipt)
        found = report.findings
        found["changed"] = [Finding("changed", nym, key, versions[i, nym], version, i)
                            for key, nym, version, i in raw.changed]
        found["unanchored"] = [Finding("unanchored", nym, key, None, version)
                               for key, nym, version in raw.unanchored]
        found["deleted"] = [Finding("deleted", nym, None, versions[i, nym], None, i)
                            for nym, i in raw.deleted]
        found["state-mismatch"] = [
            Finding("state-mismatch", nym, None, versions.get((i, nym)) if i is not None
                    else None, version, i) for nym, version, i in raw.mismatch]

    def commit(self, report: ReconcileReport) -> Ack:
        """Submit the findings as a signed Reconciliation record; its receipt goes to the
        evidence folder beside the anchors' receipts."""
        body = ledger_pb2.RecordBody(
            network=self.writer.network, agency=self.writer.agency,
            nonce=os.urandom(16), created_ms=int(time.time() * 1000),
            reconciliation=ledger_pb2.Reconciliation(
                source=self.keys.source, rows_checked=report.rows_checked,
                rows_changed=report.count("changed"), rows_deleted=report.count("deleted"),
                rows_unanchored=report.count("unanchored"),
                findings_commitment=report.findings_commitment))
        ack = self.client.submit(sign_record(body, self.writer.key))
        report.committed_index = ack.index
        if report.evidence is not None:
            verified = self.client.get_record(index=ack.index)
            base = report.evidence / f"reconciliation-{ack.index}"
            base.with_suffix(".envelope").write_bytes(verified.record.envelope.raw)
            base.with_suffix(".tlog-proof").write_bytes(verified.receipt)
        return ack

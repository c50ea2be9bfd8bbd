"""The `export` and `audit verify-ledger` commands: processes, progress and output.

The verification itself is ``node.ledger_audit`` (no clock, no processes); this module
adds what a command needs around it: a pool of worker processes for the record checks
(``--jobs``), a progress bar on stderr, and the summary on stdout (text or ``--json``).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.audit_records import ChunkResult, RecordChecker, RecordChunk
from ledger.errors import UsageError
from ledger.export import MANIFEST, ExportReader
from ledger.export_writer import export_ledger
from ledger.ledger_store import open_readonly
from node.ledger_audit import AuditReport, verify_export
from node.progress import progress_bar

IN_FLIGHT_PER_JOB = 4
"""Chunks queued per worker: enough to keep it busy, few enough to bound memory."""

_checker: RecordChecker | None = None


def _init_worker(checker: RecordChecker) -> None:
    global _checker
    _checker = checker


def _check_in_worker(chunk: RecordChunk) -> ChunkResult:
    assert _checker is not None
    return _checker(chunk)


def pooled(jobs: int) -> Any:
    """A ``ChunkMap`` running the checker in ``jobs`` processes, results in chunk order."""

    def map_chunks(checker: RecordChecker, chunks: Iterable[RecordChunk]
                   ) -> Iterator[ChunkResult]:
        with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(checker,)) as pool:
            queued: deque[Future[ChunkResult]] = deque()
            for chunk in chunks:
                queued.append(pool.submit(_check_in_worker, chunk))
                if len(queued) >= jobs * IN_FLIGHT_PER_JOB:
                    yield queued.popleft().result()
            while queued:
                yield queued.popleft().result()

    return map_chunks


AUDIT_BAR = "{desc} [{bar:20}] {percentage:3.0f}% {n}/{total} records  {rate_fmt}"
"""``verify-ledger [####......]  42% 84000/200000 records  19.2krecord/s``."""


def cmd_export(args: argparse.Namespace) -> int:
    ledger = open_readonly(Path(args.data_dir), bytes(32))
    with ledger.storage:
        result = export_ledger(ledger, Path(args.out))
    grew = (f"extended from size {result.previous_size}" if result.previous_size
            else "new export")
    print(f"exported {result.origin}: {result.tree_size} records in {result.height} blocks"
          f" to {args.out} ({grew}, {result.files_written} files written)")
    return 0


def cmd_verify_ledger(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    genesis_bytes = Path(args.trust).read_bytes()
    if not genesis_bytes.lstrip().startswith(b"{"):
        raise UsageError("verify-ledger needs the genesis.json (agency keys, validator powers)")
    if not (Path(args.dir) / MANIFEST).is_file():
        print(f"error: {args.dir} is not a ledger export (no {MANIFEST})", file=sys.stderr)
        return 3
    reader = ExportReader(Path(args.dir))
    started = time.monotonic()
    bar = progress_bar(None, "verify-ledger", quiet=False, unit="record",
                       force=args.progress, bar_format=AUDIT_BAR)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = verify_export(reader, genesis_bytes, progress=progress,
                               map_chunks=map if args.jobs == 1 else pooled(args.jobs),
                               chain=_chain(args))
    finally:
        bar.close()
    seconds = time.monotonic() - started
    if args.json:
        print(json.dumps(report_json(report, seconds, args.jobs), indent=1, sort_keys=True))
    elif report.ok:
        print(report_text(report, seconds))
    if not report.ok:
        print(f"FAILED: {report.failure}", file=sys.stderr)
        return 1
    return 0


def _chain(args: argparse.Namespace) -> bytes | None:
    chain = getattr(args, "chain", None)
    return Path(chain).read_bytes() if chain else None


def report_json(report: AuditReport, seconds: float, jobs: int) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "failure": report.failure or None,
        "origin": report.origin,
        "tree_size": report.tree_size,
        "height": report.height,
        "root": base64.b64encode(report.root).decode(),
        "tip_time_ms": report.tip_time_ms,
        "checked": {"records": report.records, "signatures": report.records,
                    "blocks": report.blocks, "certificates": report.certificates,
                    "checkpoints": report.checkpoints, "hash_tiles": report.hash_tiles,
                    "entry_bundles": report.entry_bundles},
        "records_per_agency": dict(sorted(report.per_agency.items())),
        "records_per_kind": dict(sorted(report.per_kind.items())),
        "agreements_active": [
            {"record_id": a.record_id.hex(), "index": a.index, "provider": a.provider,
             "recipient": a.recipient, "purpose": a.purpose, "datasets": list(a.datasets),
             "valid_from_ms": a.valid_from_ms, "valid_until_ms": a.valid_until_ms}
            for a in report.agreements_active
        ],
        "anomalies": report.anomalies,
        "anomaly_count": report.anomaly_count,
        "membership_transitions": [
            {"number": t.number, "height": t.from_height - 1, "tree_size": t.tree_size,
             "membership": t.membership.hash.hex(), "summary": t.summary,
             "approvers": list(t.approvers)} for t in report.transitions],
        "seconds": round(seconds, 3),
        "jobs": jobs,
        "records_per_second": round(report.records / seconds) if seconds > 0 else None,
    }


def report_text(report: AuditReport, seconds: float) -> str:
    tip = datetime.fromtimestamp(report.tip_time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        f"OK: {report.origin}: {report.records:,} records in {report.blocks:,} blocks verified,"
        f" tree size {report.tree_size:,}, root {base64.b64encode(report.root).decode()}",
        f"  checked: {report.records:,} record signatures, {report.certificates:,} commit"
        f" certificates, {report.checkpoints:,} checkpoints, {report.hash_tiles:,} hash tiles,"
        f" {report.entry_bundles:,} entry bundles in {seconds:.2f} s"
        f" ({report.records / max(seconds, 1e-9):,.0f} records/s)",
        "  records per agency: " + _counts(report.per_agency),
        "  records per kind: " + _counts(report.per_kind),
        f"  agreements active at block {report.height} ({tip} UTC):"
        f" {len(report.agreements_active)}",
    ]
    for a in report.agreements_active:
        until = "open-ended" if not a.valid_until_ms else f"until {a.valid_until_ms}"
        lines.append(f"    record {a.index} {a.provider} -> {a.recipient}: {a.purpose}"
                     f" ({', '.join(a.datasets)}; {until})")
    lines.append(f"  membership transitions: {len(report.transitions)}")
    lines += [f"    membership {t.number} adopted in block {t.from_height - 1} at tree size"
              f" {t.tree_size}: {t.summary or '(no summary)'} (approved by"
              f" {', '.join(t.approvers)})" for t in report.transitions]
    lines.append(f"  anomalies: {report.anomaly_count}")
    lines += [f"    {anomaly}" for anomaly in report.anomalies]
    return "\n".join(lines)


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items())) or "none"

"""Full-ledger audit benchmark (issue 6): `audit verify-ledger` records/s against the raw
Ed25519 verification rate of one core, measured side by side in one run.

Builds a ledger in-process as `shadowledger demo` does (4 agencies sign data-sharing
events, blocks of 1,000 records, each with a real commit certificate and a checkpoint
signed by all 4 validators), exports it (C2SP tlog-tiles), then times:
- raw: pynacl ``crypto_sign_open`` over the same records' signatures, one core, nothing
  else (the ceiling: the audit cannot check signatures faster than this);
- verify-ledger with --jobs 1 (3 times) and --jobs 2 (the code the CLI runs, in this
  process), per CPU-second of the process and its reaped workers.
Raw is measured between the audits; each audit is compared with the mean of the raw rates
just before and after it, so both figures of a ratio saw the same machine load. Prints
one JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from nacl.bindings import crypto_sign_open

from ledger.export import ExportReader
from ledger.export_writer import export_ledger
from ledger.genesis import Genesis, genesis_hash
from ledger.ledger_store import Ledger
from ledger.records import RECORD_CONTEXT, Envelope
from ledger.storage import Storage, StorageConfig
from node.audit_run import pooled
from node.demo import commit_blocks, make_network
from node.ledger_audit import verify_export

BLOCK = 1000
RAW_SAMPLE = 20_000
REPEATS = 3
"""verify-ledger --jobs 1 runs, each compared with the raw rate measured just before
and just after it."""


def _emit(rows: list[dict[str, Any]], **row: Any) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


def build(folder: Path, records: int, block: int) -> tuple[Path, bytes, float]:
    """A ledger of ``records`` records; returns (export folder, genesis bytes, seconds)."""
    started = time.perf_counter()
    net = make_network(folder / "net")
    with Storage(folder / "node", StorageConfig(sync=False)) as storage:
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        commit_blocks(net, ledger, records, block, verify=False)
        built = time.perf_counter() - started
        export_ledger(ledger, folder / "export")
    return folder / "export", net.genesis_bytes, built


def raw_verify_rate(reader: ExportReader, genesis: bytes, sample: int) -> float:
    """Ed25519 verifications per second on one core, over real records of the ledger."""
    publics = {k.key_hash: k.public_key
               for a in Genesis.from_bytes(genesis).agencies for k in a.record_keys}
    pairs = []
    for raw in reader.records(0, min(sample, reader.tree_size)):
        body, signer, signature = Envelope.split(raw)
        pairs.append((signature + RECORD_CONTEXT + body, publics[signer]))
    started = time.process_time()
    for signed, public in pairs:
        crypto_sign_open(signed, public)
    return len(pairs) / (time.process_time() - started)


def _cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (the --jobs workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_audit(export: Path, genesis: bytes, jobs: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of every process, records) of one verify-ledger run."""
    reader = ExportReader(export)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    report = verify_export(reader, genesis, map_chunks=map if jobs == 1 else pooled(jobs))
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    if not report.ok:
        raise RuntimeError(f"benchmark ledger does not verify: {report.failure}")
    return wall, cpu, report.records


def run(quick: bool = False, records: int | None = None) -> list[dict[str, Any]]:
    records = records or (5_000 if quick else 200_000)
    block = 500 if quick else BLOCK
    rows: list[dict[str, Any]] = []
    folder = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    try:
        export, genesis, built = build(folder, records, block)
        _emit(rows, bench="audit.build", records=records, block_records=block,
              seconds=round(built, 2))
        reader = ExportReader(export)
        sample = min(RAW_SAMPLE, records)
        raws = [raw_verify_rate(reader, genesis, sample)]
        audits: list[tuple[int, float, float, int, float]] = []
        for jobs in [1] * (1 if quick else REPEATS) + [2]:
            wall, cpu, checked = time_audit(export, genesis, jobs)
            raws.append(raw_verify_rate(reader, genesis, sample))
            audits.append((jobs, wall, cpu, checked, (raws[-2] + raws[-1]) / 2))
        _emit(rows, bench="audit.ed25519_raw", impl="pynacl", unit="verifies per CPU-second",
              value=round(statistics.median(raws)), samples=[round(r) for r in raws])
        for jobs, wall, cpu, checked, raw in audits:
            _emit(rows, bench="audit.verify_ledger", impl="shadowledger", jobs=jobs,
                  unit="records/s", value=round(checked / wall), records=checked,
                  per_cpu_second=round(checked / cpu), raw_around=round(raw),
                  ratio_to_raw_one_core=round(checked / cpu / raw, 3))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--records", type=int, help="ledger size (default 200,000)")
    args = parser.parse_args()
    run(quick=args.quick, records=args.records)


if __name__ == "__main__":
    main()

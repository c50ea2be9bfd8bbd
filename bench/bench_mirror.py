"""Mirror and reconcile benchmark: a SQLite table into a running local 4-node network.

    python -m bench.bench_mirror              # full: 1,000,000 rows
    python -m bench.bench_mirror --quick      # smoke: 20,000 rows
    python -m bench.bench_mirror --rows 200000

What one run does (every process it starts is stopped at the end, all on 127.0.0.1):

1. A fresh 4-validator network (``bench_cluster.LedgerNetwork``) and a SQLite table of N
   rows (id, version, name, score, born) in a temp dir.
2. ``mirror.rows_per_s``: ``shadowledger mirror`` (the CLI, as a user runs it) anchors all
   N rows in batch records of 512 rows; rows/s = N / the run's own time (from opening the
   state to the last verified acknowledgement).
3. ``mirror.per_row_baseline``: side by side in the same run, the same CLI with
   ``--batch-rows 1`` (one record per row, the network's record rate) on a smaller table;
   the ratio of the two is what batching buys.
4. ``mirror.incremental``: 1% of the rows changed, mirror run again: only those are sent.
5. ``reconcile.rows_per_s``: ``shadowledger reconcile`` over the N rows (every anchor
   record fetched with a verified read, every row hashed locally), with its peak RSS;
   ``reconcile.hash_only``: the local hashing alone, in this process, for comparison.

Every row also gives CPU seconds (the CLI process from ``getrusage(RUSAGE_CHILDREN)``,
the nodes from ``/proc/PID/stat``) and ``rows_per_cpu_s``: on a machine shared with other
work the clock rates say how busy it was, the CPU rates what the code costs.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_cluster import LedgerNetwork, RssSampler, cpu_seconds

AGENCY = "tax-agency"
FULL_ROWS, QUICK_ROWS = 1_000_000, 20_000
BASELINE_ROWS = 20_000
EXE = [sys.executable, "-m", "node.cli"]


def _emit(results: list[dict[str, Any]], **row: Any) -> None:
    results.append(row)
    print(json.dumps(row), flush=True)


def make_table(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, version INTEGER, name TEXT,"
                   " score REAL, born TEXT)")
        db.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?)",
                       ((i, 1, f"person number {i}", i / 7, f"19{i % 100:02d}-01-01")
                        for i in range(rows)))


def _run(verb: str, db: Path, profile: Path, folder: Path, *extra: str,
         sampler_pids: dict[str, int] | None = None) -> tuple[dict[str, Any], float, int | None]:
    """Run the CLI verb; (its JSON, wall seconds, peak RSS KiB if sampled)."""
    args = [*EXE, verb, "--db", str(db), "--table", "people", "--key-column", "id",
            "--version-column", "version", "--source", f"bench/{db.stem}",
            "--profile", str(profile), "--secret", str(folder / "secret"),
            "--state", str(folder / f"{db.stem}.state"), "--quiet", "--json", *extra]
    started = time.monotonic()
    cpu0 = _children_cpu()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = None
    if sampler_pids is not None:
        with RssSampler({"cli": proc.pid}, 0.5) as rss:
            out, err = proc.communicate()
        peak = max((s[1]["VmRSS"] for s in rss.samples["cli"]), default=None)
    else:
        out, err = proc.communicate()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{verb} failed ({proc.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    result["client_cpu_s"] = round(_children_cpu() - cpu0, 1)  # the CLI process (waited)
    return result, wall, peak


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _nodes_cpu(network: LedgerNetwork) -> float:
    return sum(cpu_seconds(pid) for pid in network.pids.values())


def hash_only(db: Path) -> tuple[float, float]:
    """Rows/s of reading and hashing the table in this process (no ledger at all), by the
    clock and per CPU-second of this process."""
    from ledger.anchors import RowHasher, RowKeys
    from node.sources import Source, TableSpec

    with Source.open(str(db)) as source:
        spec = source.resolve(TableSpec("people", "id", "version"))
        hasher = RowHasher(RowKeys.derive(bytes(32), "bench"), spec.columns)
        started, cpu, n = time.monotonic(), time.process_time(), 0
        for batch in source.rows(spec):
            hasher.digest_many(batch)
            n += len(batch)
    return n / (time.monotonic() - started), n / (time.process_time() - cpu)


def run(quick: bool = False, rows: int | None = None) -> list[dict[str, Any]]:
    n = rows or (QUICK_ROWS if quick else FULL_ROWS)
    baseline = min(n, QUICK_ROWS // 4 if quick else BASELINE_ROWS)
    results: list[dict[str, Any]] = []
    _emit(results, bench="mirror.config", rows=n, baseline_rows=baseline, batch_rows=512,
          validators=4)
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        folder = Path(tmp)
        main_db, base_db = folder / "people.db", folder / "people_baseline.db"
        make_table(main_db, n)
        make_table(base_db, baseline)
        with LedgerNetwork(folder / "net") as network:
            profile = network.profile(AGENCY)
            nodes0 = _nodes_cpu(network)
            full, wall, _ = _run("mirror", main_db, profile, folder)
            rate = full["rows_read"] / full["seconds"]
            nodes_cpu = _nodes_cpu(network) - nodes0
            _emit(results, bench="mirror.rows_per_s", value=round(rate), unit="rows/s",
                  rows=full["rows_read"], records=full["records"], seconds=round(
                      full["seconds"], 1), wall_s=round(wall, 1),
                  client_cpu_s=full["client_cpu_s"], nodes_cpu_s=round(nodes_cpu, 1),
                  rows_per_cpu_s=round(full["rows_read"] / (full["client_cpu_s"] + nodes_cpu)),
                  target=5000)
            nodes0 = _nodes_cpu(network)
            per_row, _, _ = _run("mirror", base_db, profile, folder, "--batch-rows", "1")
            base_rate = per_row["rows_read"] / per_row["seconds"]
            _emit(results, bench="mirror.per_row_baseline", value=round(base_rate),
                  unit="rows/s", rows=per_row["rows_read"], records=per_row["records"],
                  client_cpu_s=per_row["client_cpu_s"],
                  nodes_cpu_s=round(_nodes_cpu(network) - nodes0, 1),
                  ratio_batch_vs_per_row=round(rate / base_rate, 2))

            changed = random.Random(7).sample(range(n), max(1, n // 100))
            with sqlite3.connect(main_db) as db:
                db.executemany("UPDATE people SET version = 2, name = 'changed' WHERE id = ?",
                               [(i,) for i in changed])
            inc, _, _ = _run("mirror", main_db, profile, folder)
            _emit(results, bench="mirror.incremental", value=round(inc["rows_read"] /
                  inc["seconds"]), unit="rows/s", rows_read=inc["rows_read"],
                  rows_changed=inc["rows_changed"], records=inc["records"],
                  seconds=round(inc["seconds"], 1))

            report, wall, peak = _run("reconcile", main_db, profile, folder, "--evidence",
                                      str(folder / "evidence"), sampler_pids={})
            _emit(results, bench="reconcile.rows_per_s",
                  value=round(report["rows_checked"] / report["seconds"]), unit="rows/s",
                  rows=report["rows_checked"], records_verified=report[
                      "anchor_records_verified"], seconds=report["seconds"],
                  ledger_s=report["ledger_seconds"], wall_s=round(wall, 1),
                  client_cpu_s=report["client_cpu_s"],
                  rows_per_cpu_s=round(report["rows_checked"] / report["client_cpu_s"]),
                  findings=report["counts"],
                  peak_rss_mib=round(peak / 1024, 1) if peak else None, target=50_000)
        local, local_cpu = hash_only(main_db)
        _emit(results, bench="reconcile.hash_only", value=round(local), unit="rows/s",
              rows_per_cpu_s=round(local_cpu),
              reconcile_vs_hash_only=round(results[-1]["value"] / local, 2))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    parser.add_argument("--rows", type=int, help="table size (default 1,000,000)")
    args = parser.parse_args(argv)
    run(quick=args.quick, rows=args.rows)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()

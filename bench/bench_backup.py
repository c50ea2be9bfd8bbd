"""Backup and restore benchmark: what an operator waits for, side by side with a plain copy.

Prints one JSON object per line. Figures (issue 8), on one store of N demo records:
- `node backup` (read-only open beside the store, compacting LMDB copy, manifest with
  a full integrity check of the copy and its SHA-256), against a plain `cp` of
  `data.mdb` (which is not consistent while a node writes): median of interleaved runs;
- `node verify-backup` and `node restore` (all checks, then install), in records/s;
- backup size / store size (compaction);
- the writer's block-commit time while a backup runs, against the same writer alone,
  from one child process that keeps committing blocks.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.storage import Storage, StorageConfig
from node.backup import create_backup, restore_backup, verify_backup
from node.demo import commit_blocks, make_network

BLOCK = 500


def _emit(rows: list[dict[str, Any]], **row: Any) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


def _build(folder: Path, records: int) -> bytes:
    net = make_network(folder)
    with Storage(folder / "node") as storage:
        commit_blocks(net, Ledger(storage, genesis_hash(net.genesis_bytes)), records, BLOCK)
    return net.genesis_bytes


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _lmdb_copy(store: Path, out: Path) -> None:
    with Storage(store, StorageConfig(readonly=True)) as live:
        live.copy_to(out)


def _medians(work: Path, store: Path, genesis: bytes, rounds: int) -> tuple[float, ...]:
    """Interleaved: full backup, LMDB compacting copy alone, plain file copy."""
    ours, lmdb_copy, plain = [], [], []
    for i in range(rounds):
        out = work / f"b{i}"
        ours.append(_timed(lambda o=out: create_backup(store, o, datetime.now(UTC), genesis)))
        lmdb_copy.append(_timed(lambda i=i: _lmdb_copy(store, work / f"l{i}")))
        plain.append(_timed(lambda i=i: shutil.copyfile(store / "data.mdb", work / f"c{i}")))
    return statistics.median(ours), statistics.median(lmdb_copy), statistics.median(plain)


_WRITER = """
import sys, time
from pathlib import Path
from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.storage import Storage, StorageConfig
from node.demo import commit_blocks, make_network
folder, seconds = Path(sys.argv[1]), float(sys.argv[2])
net = make_network(folder)
end = time.monotonic() + seconds
with Storage(folder / "node") as storage:
    ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
    commit = ledger.commit_block
    def timed(*args, **kwargs):
        if time.monotonic() > end:
            raise SystemExit(0)
        start = time.perf_counter()
        head = commit(*args, **kwargs)
        took = time.perf_counter() - start
        print("ready" if head.height == 1 else f"{time.monotonic():.4f} {took:.6f}", flush=True)
        return head
    ledger.commit_block = timed
    commit_blocks(net, ledger, 10**9, 100)
"""


def _live_impact(work: Path, seconds: float) -> dict[str, Any]:
    """Median block commit time of a writer with and without a concurrent backup."""
    folder = work / "live"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(seconds / 3)
        windows = []
        for i in range(3):  # back up repeatedly during the middle third
            start = time.monotonic()
            create_backup(folder / "node", work / f"live-{i}", datetime.now(UTC),
                          (folder / "genesis.json").read_bytes())
            windows.append((start, time.monotonic()))
        out, _ = proc.communicate(timeout=seconds * 4 + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    samples = [tuple(map(float, line.split())) for line in out.splitlines() if line]
    during = [d for t, d in samples if any(a <= t <= b for a, b in windows)]
    alone = [d for t, d in samples if not any(a - 1 <= t <= b + 1 for a, b in windows)]
    return {"during_ms": 1000 * statistics.median(during) if during else None,
            "alone_ms": 1000 * statistics.median(alone) if alone else None,
            "blocks_during": len(during), "blocks_alone": len(alone)}


def run(quick: bool = False) -> list[dict[str, Any]]:
    records = 5_000 if quick else 200_000
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        work = Path(tmp)
        genesis = _build(work / "src", records)
        store = work / "src" / "node"
        ours, lmdb_copy, plain = _medians(work, store, genesis, 3)
        backup = work / "b0"
        size = (backup / "data.mdb").stat().st_size
        source = (store / "data.mdb").stat().st_size
        _emit(rows, bench="backup.create", impl="shadowledger", records=records,
              value=round(ours, 4), unit="s", lmdb_copy_s=round(lmdb_copy, 4),
              plain_copy_s=round(plain, 4), ratio_vs_plain_copy=round(ours / plain, 2),
              ratio_lmdb_copy_vs_plain=round(lmdb_copy / plain, 2), backup_bytes=size,
              store_bytes=source, size_ratio=round(size / source, 3))
        verify = _timed(lambda: verify_backup(backup, genesis))
        _emit(rows, bench="backup.verify", impl="shadowledger", records=records,
              value=round(records / verify), unit="records/s", seconds=round(verify, 4))
        restore = _timed(lambda: restore_backup(backup, work / "restored",
                                                datetime.now(UTC), genesis=genesis))
        _emit(rows, bench="backup.restore", impl="shadowledger", records=records,
              value=round(records / restore), unit="records/s", seconds=round(restore, 4))
        live = _live_impact(work, 6.0 if quick else 30.0)
        ratio = (live["during_ms"] / live["alone_ms"]
                 if live["during_ms"] and live["alone_ms"] else None)
        _emit(rows, bench="backup.live_commit", impl="shadowledger", value=ratio,
              unit="ratio of median block commit time (during backup / alone)", **live)
    return rows


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)

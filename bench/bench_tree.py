"""Merkle tree benchmark: the LMDB tree side by side with pymerkle 7, in one run.

Prints one JSON object per line. Figures (issue 2):
- durable append in 1,000-leaf batches (leaf hashing of 100-byte entries included);
- inclusion proof generation and verification at 1,000,000 leaves (median of samples);
- RSS after 1M and after 10M appended leaves, in a child process.
Ratios compare implementations measured in this same run, interleaved, so machine noise
hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import merkle
from ledger.storage import Storage
from ledger.tree_store import TreeStore

BATCH = 1000
ENTRY = 100


def _entries(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(ENTRY) for _ in range(n)]


def _emit(results: list[dict[str, Any]], **row: Any) -> None:
    results.append(row)
    print(json.dumps(row), flush=True)


def _append_ours(workdir: Path, batches: list[list[bytes]]) -> float:
    shutil.rmtree(workdir, ignore_errors=True)
    with Storage(workdir) as storage:
        tree = TreeStore(storage)
        start = time.perf_counter()
        for batch in batches:
            tree.append_durably(merkle.leaf_hashes(batch))
        return time.perf_counter() - start


def _append_pymerkle_memory(batches: list[list[bytes]]) -> float:
    from pymerkle import InmemoryTree

    tree = InmemoryTree()
    start = time.perf_counter()
    for batch in batches:
        for entry in batch:
            tree.append_entry(entry)
    return time.perf_counter() - start


def _append_pymerkle_sqlite(path: Path, batches: list[list[bytes]]) -> float:
    from pymerkle import SqliteTree

    path.unlink(missing_ok=True)
    tree = SqliteTree(str(path))
    start = time.perf_counter()
    for batch in batches:
        tree.append_entries(batch)  # one SQLite transaction per batch
    elapsed = time.perf_counter() - start
    tree.con.close()
    return elapsed


def bench_append(results: list[dict[str, Any]], workdir: Path, leaves: int, rounds: int) -> None:
    batches = [_entries(BATCH, seed) for seed in range(leaves // BATCH)]
    ours, mem, sql = [], [], []
    for _ in range(rounds):  # interleaved: each round measures every implementation
        ours.append(leaves / _append_ours(workdir / "append", batches))
        mem.append(leaves / _append_pymerkle_memory(batches))
        sql.append(leaves / _append_pymerkle_sqlite(workdir / "append.sqlite", batches))
    base = {"bench": "tree.append", "batch": BATCH, "leaves": leaves, "unit": "leaves/s"}
    _emit(results, **base, impl="shadowledger-lmdb-durable", value=round(statistics.median(ours)))
    _emit(results, **base, impl="pymerkle-inmemory", value=round(statistics.median(mem)))
    _emit(results, **base, impl="pymerkle-sqlite", value=round(statistics.median(sql)))
    _emit(
        results,
        bench="tree.append.ratio",
        vs="pymerkle-inmemory",
        value=round(statistics.median(ours) / statistics.median(mem), 2),
    )


def _median_us(fn: Callable[[int], object], indices: list[int]) -> float:
    samples = []
    for i in indices:
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def bench_proofs(results: list[dict[str, Any]], workdir: Path, leaves: int) -> None:
    from pymerkle import InmemoryTree, SqliteTree
    from pymerkle import verify_inclusion as pm_verify

    batches = [_entries(BATCH, seed) for seed in range(leaves // BATCH)]
    shutil.rmtree(workdir / "proofs", ignore_errors=True)
    storage = Storage(workdir / "proofs")
    ours = TreeStore(storage)
    mem = InmemoryTree()
    (workdir / "proofs.sqlite").unlink(missing_ok=True)
    sql = SqliteTree(str(workdir / "proofs.sqlite"))
    for batch in batches:
        ours.append_durably(merkle.leaf_hashes(batch))
        for entry in batch:
            mem.append_entry(entry)
    sql.append_entries([e for b in batches for e in b])
    rng = random.Random(7)
    idx = [rng.randrange(leaves) for _ in range(2000)]
    root = ours.root()
    base = {"bench": "tree.inclusion_proof", "leaves": leaves, "unit": "us", "stat": "median"}
    t_ours = _median_us(lambda i: ours.inclusion_proof(i), idx)
    t_mem = _median_us(lambda i: mem.prove_inclusion(i + 1, leaves), idx)
    t_sql = _median_us(lambda i: sql.prove_inclusion(i + 1, leaves), idx[:200])
    _emit(results, **base, impl="shadowledger-lmdb", value=round(t_ours, 1))
    _emit(results, **base, impl="pymerkle-inmemory", value=round(t_mem, 1))
    _emit(results, **base, impl="pymerkle-sqlite", value=round(t_sql, 1))
    for vs, t in (("pymerkle-sqlite", t_sql), ("pymerkle-inmemory", t_mem)):
        _emit(results, bench="tree.inclusion_proof.speedup", vs=vs, value=round(t / t_ours, 2))
    proofs = {i: ours.inclusion_proof(i) for i in idx}
    leaves_h = dict(zip(idx, ours.nodes([(0, i) for i in idx]), strict=True))
    t_ver = _median_us(
        lambda i: merkle.verify_inclusion(leaves_h[i], i, leaves, proofs[i], root), idx
    )
    pm_root = mem.get_root()
    pm_proofs = {i: mem.prove_inclusion(i + 1, leaves) for i in idx}
    pm_leaf = {i: mem.get_leaf(i + 1) for i in idx}
    t_pm_ver = _median_us(lambda i: pm_verify(pm_leaf[i], pm_root, pm_proofs[i]), idx)
    vbase = {"bench": "tree.verify_inclusion", "leaves": leaves, "unit": "us", "stat": "median"}
    _emit(results, **vbase, impl="shadowledger", value=round(t_ver, 1))
    _emit(results, **vbase, impl="pymerkle", value=round(t_pm_ver, 1))
    _emit(results, bench="tree.verify_inclusion.speedup", vs="pymerkle",
          value=round(t_pm_ver / t_ver, 2))
    sql.con.close()
    storage.close()


def _rss_kib() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(rest.split()[0])
    return fields


def rss_child(workdir: Path, marks: list[int]) -> None:
    """Append up to max(marks) leaves; print RSS at each mark as JSON (run in a child)."""
    shutil.rmtree(workdir, ignore_errors=True)
    batch = _entries(BATCH, 1)
    with Storage(workdir) as storage:
        tree = TreeStore(storage)
        for mark in sorted(marks):
            while tree.size < mark:
                # Vary the data so that no two batches hash alike.
                salt = tree.size.to_bytes(8, "big")
                tree.append_durably(merkle.leaf_hashes([salt + e for e in batch]))
            tree.inclusion_proof(tree.size // 3)
            print(json.dumps({"leaves": tree.size, **_rss_kib()}), flush=True)


def bench_memory(results: list[dict[str, Any]], workdir: Path, marks: list[int]) -> None:
    cmd = [sys.executable, "-m", "bench.bench_tree", "--rss-child", str(workdir / "rss")]
    cmd += [str(m) for m in marks]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for row in rows:
        _emit(results, bench="tree.rss", impl="shadowledger-lmdb", unit="KiB", **row)
    first, last = rows[0], rows[-1]
    _emit(
        results,
        bench="tree.rss.ratio",
        between=[first["leaves"], last["leaves"]],
        value=round(last["VmRSS"] / first["VmRSS"], 3),
    )
    shutil.rmtree(workdir / "rss", ignore_errors=True)


def run(quick: bool = False) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-tree-"))
    try:
        if quick:
            bench_append(results, workdir, 20_000, 1)
            bench_proofs(results, workdir, 20_000)
            bench_memory(results, workdir, [10_000, 40_000])
        else:
            bench_append(results, workdir, 200_000, 3)
            bench_proofs(results, workdir, 1_000_000)
            bench_memory(results, workdir, [1_000_000, 10_000_000])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--rss-child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(Path(args.rss_child[0]), [int(m) for m in args.rss_child[1:]])
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")
    run(quick=args.quick)


if __name__ == "__main__":
    main()

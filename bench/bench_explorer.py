"""Explorer benchmark: the first whole-ledger scan and page answers over HTTP.

Prints one JSON object per line:
- explorer.stats_scan: records/s of the one pass that builds agreements and chart figures
  (every block read and every record body decoded), the cost of the first chart request;
- explorer.http.*: requests/s and median latency over one keep-alive connection to
  127.0.0.1 for a decoded record (its signature checked), a page of 20 blocks and a
  receipt (an inclusion proof from LMDB), side by side in one run.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.storage import Storage
from node.demo import commit_blocks, make_network
from node.explorer.server import ExplorerServer
from node.explorer.stats import LedgerStats
from node.explorer.views import Explorer


def _emit(rows: list[dict[str, Any]], **row: Any) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


def _requests(port: int, paths: list[str]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    try:
        for path in paths:
            start = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            times.append(time.perf_counter() - start)
            assert response.status == 200, (path, response.status)
    finally:
        conn.close()
    return times


def run(quick: bool = False) -> list[dict[str, Any]]:
    records, requests = (2_000, 50) if quick else (100_000, 1_000)
    rows: list[dict[str, Any]] = []
    folder = Path(tempfile.mkdtemp(prefix="bench-explorer-"))
    try:
        net = make_network(folder)
        with Storage(folder / "node") as storage:
            ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
            commit_blocks(net, ledger, records, 1000)
            start = time.perf_counter()
            LedgerStats().update(ledger)
            scan = time.perf_counter() - start
            _emit(rows, bench="explorer.stats_scan", impl="shadowledger", records=records,
                  value=round(records / scan), unit="records/s")
            server = ExplorerServer(Explorer(ledger, net.genesis_bytes), "127.0.0.1:0").start()
            try:
                _cold_blocks(rows, server.port, ledger.head.height)
                _http(rows, server.port, records, requests, ledger.head.height)
            finally:
                server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _cold_blocks(rows: list[dict[str, Any]], port: int, height: int) -> None:
    """Pages of 20 blocks, each block read for the first time (no header cached yet)."""
    paths = [f"/api/blocks?limit=20&before={top + 1}" for top in range(height, 0, -20)]
    times = _requests(port, paths)
    _emit(rows, bench="explorer.http.blocks_page_cold", impl="shadowledger",
          requests=len(times), value=round(len(times) / sum(times)), unit="requests/s",
          p50_ms=round(statistics.median(times) * 1000, 3))


def _http(rows: list[dict[str, Any]], port: int, records: int, requests: int,
          height: int) -> None:
    rng = random.Random(7)
    kinds = {
        "record": lambda: f"/api/records/{rng.randrange(records)}",
        "blocks_page": lambda: f"/api/blocks?limit=20&before={rng.randrange(2, height + 1)}",
        "receipt": lambda: f"/api/records/{rng.randrange(records)}/receipt",
    }
    _requests(port, ["/api/status", "/api/charts/records-per-day"])  # warm the index
    timings: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(10):  # interleaved rounds: machine noise hits every kind alike
        for name, path in kinds.items():
            timings[name] += _requests(port, [path() for _ in range(requests // 10)])
    for name, times in timings.items():
        _emit(rows, bench=f"explorer.http.{name}", impl="shadowledger", requests=len(times),
              value=round(len(times) / sum(times)), unit="requests/s",
              p50_ms=round(statistics.median(times) * 1000, 3))


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv)

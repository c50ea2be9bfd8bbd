"""Witness benchmark: add-checkpoint requests per second, three ways side by side.

- ``decide``: the checks alone (parse, 3 of 4 validator signatures, consistency proof,
  one cosignature), state in memory;
- ``store``: the same through ``Witness.add_checkpoint`` with its durable SQLite state
  (``synchronous=FULL``: one fsync'd transaction per accepted checkpoint);
- ``http``: a client POSTing over one keep-alive connection to the HTTP server on
  127.0.0.1, as a node does.
Each request advances the tree by one leaf. Rounds are interleaved so machine noise
hits all three alike; the ratios are what to compare (the machine is shared).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.keys import ALG_COSIGNATURE_V1, SigningKey
from ledger.witness import AddCheckpoint, Cosigned, LogTrust, decide
from node.logging_setup import configure_logging, get_logger
from node.witness.alarms import Alarms
from node.witness.server import Witness, WitnessHTTPServer
from node.witness.store import WitnessStore
from node.witnessing import WitnessConnection

ORIGIN = "bench.shadow-ledger.example/v1"
ROUNDS = 3


def _key(name: str, alg: int = 0x01) -> SigningKey:
    return SigningKey(name, hashlib.sha256(name.encode()).digest(), alg)


VALIDATORS = [_key(f"validator-{i}") for i in range(4)]
WITNESS_KEY = _key("bench/w1", ALG_COSIGNATURE_V1)
TRUST = LogTrust(ORIGIN, tuple(k.verifier for k in VALIDATORS), 3)


def _requests(n: int) -> list[bytes]:
    """Consistent requests for sizes 1..n, each from the previous size."""
    tree = merkle.MemoryTree(merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(n))
    out = []
    for size in range(1, n + 1):
        note = sign_checkpoint(Checkpoint(ORIGIN, size, tree.root(size)), VALIDATORS[:3])
        old = size - 1
        proof = merkle.prove_consistency(tree, old, size) if old else []
        out.append(AddCheckpoint(old, tuple(proof), note).to_bytes())
    return out


def _decide_only(bodies: list[bytes], _: Path) -> None:
    latest: Cosigned | None = None
    seen: dict[int, bytes] = {}
    for body in bodies:
        d = decide(body, TRUST, latest, seen.get, WITNESS_KEY, 1)
        assert d.accept is not None, d.reason
        latest = d.accept
        seen[latest.checkpoint.size] = latest.note


def _witness(folder: Path) -> tuple[Witness, CollectorRegistry]:
    registry = CollectorRegistry()
    log = get_logger("bench")
    alarms = Alarms(folder / "alarms", WITNESS_KEY.verifier.to_vkey(), registry, log)
    store = WitnessStore(folder / "witness.sqlite")
    return Witness(TRUST, WITNESS_KEY, store, alarms, registry, log), registry


def _with_store(bodies: list[bytes], folder: Path) -> None:
    witness, _ = _witness(folder)
    try:
        for body in bodies:
            assert witness.add_checkpoint(body, 1).status == 200
    finally:
        witness.store.close()


def _over_http(bodies: list[bytes], folder: Path) -> None:
    witness, registry = _witness(folder)
    server = WitnessHTTPServer(("127.0.0.1", 0), witness, registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = WitnessConnection(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        for body in bodies:
            assert conn.post(body)[0] == 200
    finally:
        conn.close()
        server.shutdown()
        server.server_close()
        witness.store.close()


def run(quick: bool = False) -> list[dict[str, Any]]:
    configure_logging("console", "warning")  # one info line per cosignature otherwise
    n = 50 if quick else 1000
    bodies = _requests(n)
    impls: dict[str, Callable[[list[bytes], Path], None]] = {
        "decide": _decide_only, "store": _with_store, "http": _over_http}
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(ROUNDS):
        for name, fn in impls.items():
            with tempfile.TemporaryDirectory(prefix="bench-witness-") as tmp:
                start = time.perf_counter()
                fn(bodies, Path(tmp))
                times[name].append(time.perf_counter() - start)
    rows = []
    base = min(times["decide"])
    for name, samples in times.items():
        best = min(samples)
        row = {"bench": "witness_add_checkpoint", "impl": name, "requests": n,
               "per_s": round(n / best, 1), "vs_decide": round(best / base, 2),
               "rounds": ROUNDS}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv)

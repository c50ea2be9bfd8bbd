"""Ed25519 under thread contention: PyNaCl's calls against ``ledger/ed25519.py``'s.

    python -m bench --only gil

A node's threads all want the GIL. PyNaCl (cffi) releases it around every C call, and
CPython gives it back only when the thread holding it yields, after the switch interval
(5 ms) at worst: a thread doing many short C calls waits up to 5 ms for each while
another thread runs Python code (the "convoy effect"). ``ledger/ed25519.py`` calls the
same libsodium functions through ``ctypes.PyDLL``, which keeps the GIL during the 60 us call.

Rows: verifications (and signatures) per second on the main thread, alone and while one
other thread runs a pure-Python loop, for both ways, interleaved in rounds; the ratio
column compares them side by side in this run.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable

import nacl.signing

from ledger import ed25519


def _rate(call: Callable[[], object], seconds: float, busy: bool) -> float:
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    thread = threading.Thread(target=spin, daemon=True) if busy else None
    if thread is not None:
        thread.start()
        time.sleep(0.01)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            call()
        done += 20
    elapsed = time.perf_counter() - start
    stop.set()
    if thread is not None:
        thread.join()
    return done / elapsed


def run(quick: bool = False) -> None:
    key = nacl.signing.SigningKey(b"\x05" * 32)
    message = b"x" * 200
    signature = key.sign(message).signature
    verify_key = key.verify_key
    public, secret = ed25519.secret_key(b"\x05" * 32)
    ways: dict[str, Callable[[], object]] = {
        "verify.pynacl": lambda: verify_key.verify(message, signature),
        "verify.ledger_ed25519": lambda: ed25519.verify(public, message, signature),
        "sign.pynacl": lambda: key.sign(message),
        "sign.ledger_ed25519": lambda: ed25519.sign(secret, message),
    }
    seconds, rounds = (0.2, 2) if quick else (1.0, 5)
    rates: dict[tuple[str, bool], list[float]] = {}
    for _ in range(rounds):
        for name, call in ways.items():
            for busy in (False, True):
                rates.setdefault((name, busy), []).append(_rate(call, seconds, busy))
    for name in ways:
        alone = statistics.median(rates[(name, False)])
        beside = statistics.median(rates[(name, True)])
        print(json.dumps({"bench": f"gil.{name}", "alone_per_s": round(alone),
                          "beside_busy_thread_per_s": round(beside),
                          "ratio_beside_to_alone": round(beside / alone, 3),
                          "holds_gil": ed25519.HOLDS_GIL if "ledger" in name else False,
                          "rounds": rounds, "seconds": seconds}), flush=True)

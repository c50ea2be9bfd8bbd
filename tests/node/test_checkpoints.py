"""CheckpointCollector: a quorum of signature lines makes a checkpoint final; waiters are
woken with the note before its durable write, and reads that need it wait for that."""

from __future__ import annotations

import threading
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.keys import SigningKey
from ledger.note import signature_for
from node.checkpoints import CheckpointCollector

NET = "test.example/checkpoints"


def _key(i: int) -> SigningKey:
    return SigningKey.generate(f"v{i}", lambda n: bytes([i + 1]) * n)


KEYS = [_key(i) for i in range(4)]
ROOT = b"\x05" * 32


class _Tree:
    size = 10

    def root(self, size: int) -> bytes:
        return ROOT


class _SlowLedger:
    """Holds the checkpoint write until the test lets it finish."""

    def __init__(self) -> None:
        self.tree = _Tree()
        self.stored: dict[int, bytes] = {}
        self.release = threading.Event()

    def latest_checkpoint(self) -> None:
        return None

    def add_checkpoint(self, size: int, note: bytes) -> None:
        assert self.release.wait(10)
        self.stored[size] = note


class _Peers:
    def broadcast(self, message: Any) -> None:
        pass


def _line(key: SigningKey, size: int) -> str:
    return signature_for(Checkpoint(NET, size, ROOT).to_text(), key).to_line()


def test_final_note_reaches_waiters_before_it_is_written() -> None:
    ledger = _SlowLedger()
    collector = CheckpointCollector(NET, [k.verifier for k in KEYS], 3, ledger,  # type: ignore[arg-type]
                                    _Peers(), None, log=None)  # type: ignore[arg-type]
    assert collector.wait_stored(10, 0.01) is False  # nothing final: no wait at all
    assert collector.add(10, _line(KEYS[0], 10)) and collector.add(10, _line(KEYS[1], 10))
    assert collector.wait_final(10, 0.01) is None  # 2 of 3
    third = threading.Thread(target=collector.add, args=(10, _line(KEYS[2], 10)))
    third.start()
    final = collector.wait_final(10, 5.0)  # woken while the write is held back
    assert final is not None and final[0] == 10 and ledger.stored == {}
    assert final[1].count(b"\n\xe2\x80\x94 v") == 3  # the note carries the three signatures
    assert collector.wait_stored(10, 0.05) is False  # still being written
    ledger.release.set()
    assert collector.wait_stored(10, 5.0) is True and ledger.stored == {10: final[1]}
    third.join(5)

"""CheckpointCollector: a quorum of signature lines makes a checkpoint final; waiters are
woken with the note before its durable write, and reads that need it wait for that."""

from __future__ import annotations

import threading
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.genesis import Validator
from ledger.keys import SigningKey
from ledger.membership import Membership
from ledger.note import signature_for
from node.checkpoints import CheckpointCollector

NET = "test.example/checkpoints"


def _key(i: int) -> SigningKey:
    return SigningKey.generate(f"v{i}", lambda n: bytes([i + 1]) * n)


KEYS = [_key(i) for i in range(4)]
ROOT = b"\x05" * 32
MEMBERSHIP = Membership(tuple(Validator(k.verifier) for k in KEYS), ())


class _Tree:
    size = 10

    def root(self, size: int) -> bytes:
        return ROOT


class _SlowLedger:
    """Holds checkpoint writes until the test lets them finish."""

    def __init__(self) -> None:
        self.tree = _Tree()
        self.stored: dict[int, bytes] = {}
        self.release = threading.Event()
        self.writes = 0

    def latest_checkpoint(self) -> None:
        return None

    def checkpoint(self, size: int) -> bytes | None:
        return self.stored.get(size)

    def add_checkpoints(self, notes: list[tuple[int, bytes]]) -> None:
        assert self.release.wait(10)
        self.writes += 1
        self.stored.update(notes)


class _Peers:
    def broadcast(self, message: Any) -> None:
        pass


def _line(key: SigningKey, size: int) -> str:
    return signature_for(Checkpoint(NET, size, ROOT).to_text(), key).to_line()


def _collector(ledger: _SlowLedger) -> CheckpointCollector:
    return CheckpointCollector(NET, lambda size: MEMBERSHIP, ledger,  # type: ignore[arg-type]
                               _Peers(), (), log=None)  # type: ignore[arg-type]


def test_final_note_reaches_waiters_before_it_is_written() -> None:
    ledger = _SlowLedger()
    collector = _collector(ledger)
    notified: list[int] = []
    collector.listeners.append(lambda: notified.append(ledger.writes))
    assert collector.add(10, _line(KEYS[0], 10)) and collector.add(10, _line(KEYS[1], 10))
    assert collector.wait_final(10, 0.01) is None  # 2 of 3
    third = threading.Thread(target=collector.add, args=(10, _line(KEYS[2], 10)))
    third.start()
    final = collector.wait_final(10, 5.0)  # woken while the write is held back
    assert final is not None and final[0] == 10 and ledger.stored == {}
    assert final[1].count(b"\n\xe2\x80\x94 v") == 3  # the note carries the three signatures
    assert collector.note(10) == final[1]  # served from memory meanwhile
    ledger.release.set()
    third.join(5)
    assert ledger.stored == {10: final[1]} and collector.unwritten() == []
    assert notified == [1]  # witness feeds hear of it once it is stored


def test_deferred_notes_wait_for_the_next_block_or_a_flush() -> None:
    ledger = _SlowLedger()
    ledger.release.set()
    collector = _collector(ledger)
    collector.defer_writes = True
    notified: list[int] = []
    collector.listeners.append(lambda: notified.append(len(ledger.stored)))
    for size in (10, 9):
        for key in KEYS[:3]:
            collector.add(size, _line(key, size))
    final = collector.wait_final(10, 1.0)
    assert final is not None and final[0] == 10 and ledger.writes == 0
    assert [size for size, _ in collector.unwritten()] == [9, 10]
    assert collector.note(9) is not None and collector.note(11) is None
    collector.written([9])  # the driver wrote it with a block
    assert [size for size, _ in collector.unwritten()] == [10] and notified == [0]
    collector.flush()  # idle, or stopping: one write for what is left
    assert ledger.writes == 1 and list(ledger.stored) == [10] and collector.unwritten() == []
    assert notified == [0, 1]
    collector.flush()
    assert ledger.writes == 1


def test_an_adoptions_last_size_is_written_at_once_even_when_deferring() -> None:
    """The note of T_i (the last size the older membership signs) is a link of the
    membership chain: it is not left to the deferred window a crash could lose."""
    ledger = _SlowLedger()
    ledger.release.set()
    later = Membership(tuple(Validator(k.verifier) for k in KEYS[:3]), ())
    collector = CheckpointCollector(  # type: ignore[arg-type]
        NET, lambda size: MEMBERSHIP if size <= 9 else later, ledger,  # type: ignore[arg-type]
        _Peers(), (), log=None)
    collector.defer_writes = True
    for key in KEYS[:3]:
        collector.add(9, _line(key, 9))
    assert ledger.stored.keys() == {9} and collector.unwritten() == []
    for key in KEYS[:3]:
        collector.add(10, _line(key, 10))
    assert collector.note(10) is not None and ledger.stored.keys() == {9}  # deferred

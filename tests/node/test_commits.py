"""CommitBoard: a waiting submitter learns at once that its record was left out, and why."""

from __future__ import annotations

import threading
import time

from node.commits import CommitBoard


def test_refusal_wakes_the_waiter_with_the_reason() -> None:
    board = CommitBoard(size=0)
    rid, other = b"\x01" * 32, b"\x02" * 32
    board.expect(rid)
    got: list[object] = []

    def wait() -> None:
        got.append(board.wait(rid, timeout=30.0))
        got.append(board.refusal(rid))

    waiter = threading.Thread(target=wait)
    started = time.monotonic()
    waiter.start()
    board.refused([(rid, "agreement 01 expired"), (other, "nobody waits for this one")])
    waiter.join(timeout=10)
    assert got == [None, "agreement 01 expired"]
    assert time.monotonic() - started < 10  # woken by the refusal, not by the timeout
    assert board.settled(rid) and board.placed(rid) is None
    assert not board.settled(other) and board.refusal(other) is None  # not kept: no waiter
    board.forget(rid)
    assert not board.settled(rid) and board.refusal(rid) is None

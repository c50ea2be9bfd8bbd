"""Consensus work first: bulk threads step aside while the consensus thread is busy.

A node runs one consensus thread and many bulk threads (gossip from each peer, client
submissions), all under one GIL. Each LMDB call releases the GIL (py-lmdb does so around
every ``mdb_put``/``mdb_get``), and a thread that released it gets it back only when the
thread now holding it yields, after the 5 ms switch interval when that thread is busy
verifying records. A block commit makes thousands of LMDB calls, so under load it took
70-180 ms instead of 12, and validating a proposal waited the same way: all of it on the
path of every record's latency.

So the consensus thread marks its heavy steps ``critical``; bulk loops call ``yield_to()``
between items, which parks them (on an event: they neither run nor ask for the GIL) until
no critical step is running. The wait is bounded (``MAX_PAUSE_S``) so bulk work never
starves, and it is a hint only: correctness never depends on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

MAX_PAUSE_S = 0.2
"""The longest a bulk thread waits for one critical step."""


class Priority:
    """Critical steps of some threads; ``yield_to`` parks the other threads during them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._clear = threading.Event()
        self._clear.set()
        self._local = threading.local()

    @contextmanager
    def critical(self) -> Iterator[None]:
        """Run the block as a critical step (re-entrant; any thread may)."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        if depth == 0:
            with self._lock:
                self._active += 1
                self._clear.clear()
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._lock:
                    self._active -= 1
                    if self._active == 0:
                        self._clear.set()

    def yield_to(self) -> None:
        """Wait (at most ``MAX_PAUSE_S``) while a critical step runs on another thread."""
        if not self._clear.is_set() and not getattr(self._local, "depth", 0):
            self._clear.wait(MAX_PAUSE_S)

    @property
    def busy(self) -> bool:
        return not self._clear.is_set()


PRIORITY = Priority()
"""The process's one instance: the consensus driver marks steps, bulk loops yield to them."""

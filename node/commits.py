"""Who is waiting for which record, and the committed size for watchers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

from ledger.blocks import Block


class CommitBoard:
    """Submit handlers wait here for their records; Watch streams wait for new sizes."""

    def __init__(self, size: int, height: int = 0) -> None:
        self._cond = threading.Condition()
        self._waiting: dict[bytes, int] = {}  # record id -> number of waiters
        self._results: dict[bytes, tuple[int, int]] = {}  # record id -> (index, height)
        self._refusals: dict[bytes, str] = {}  # record id -> why it was dropped unplaced
        self.size = size
        self.height = height
        self._last_commit = time.monotonic()

    def expect(self, record_id: bytes) -> None:
        """Register interest before submitting, so a fast commit is not missed."""
        with self._cond:
            self._waiting[record_id] = self._waiting.get(record_id, 0) + 1

    def forget(self, record_id: bytes) -> None:
        with self._cond:
            left = self._waiting.get(record_id, 0) - 1
            if left <= 0:
                self._waiting.pop(record_id, None)
                self._results.pop(record_id, None)
                self._refusals.pop(record_id, None)
            else:
                self._waiting[record_id] = left

    def committed(self, block: Block, size: int, record_ids: Iterable[bytes]) -> None:
        first = size - len(block.envelopes)
        with self._cond:
            for offset, rid in enumerate(record_ids):
                if rid in self._waiting:
                    self._results[rid] = (first + offset, block.header.height)
            self.size = size
            self.height = block.header.height
            self._last_commit = time.monotonic()
            self._cond.notify_all()

    def refused(self, refusals: Sequence[tuple[bytes, str]]) -> None:
        """Records dropped from the mempool without a block (e.g. the proposer found
        their agreement expired): their waiting submitters are answered with the reason."""
        with self._cond:
            for rid, reason in refusals:
                if rid in self._waiting:
                    self._refusals[rid] = reason
            self._cond.notify_all()

    def placed(self, record_id: bytes) -> tuple[int, int] | None:
        """(index, height) of a committed record someone waits for, without waiting."""
        return self._results.get(record_id)

    def settled(self, record_id: bytes) -> bool:
        """Whether a waited-for record was committed or refused (no need to wait more)."""
        return record_id in self._results or record_id in self._refusals

    def refusal(self, record_id: bytes) -> str | None:
        return self._refusals.get(record_id)

    def wait(self, record_id: bytes, timeout: float) -> tuple[int, int] | None:
        """(index, height) once committed; None on timeout or refusal (see ``refusal``)."""
        with self._cond:
            self._cond.wait_for(lambda: self.settled(record_id), timeout)
            return self._results.get(record_id)

    def wait_size(self, above: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.size > above, timeout)
            return self.size

    def wait_height(self, height: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.height >= height, timeout)

    def idle_for(self) -> float:
        """Seconds since the last block was committed here."""
        return time.monotonic() - self._last_commit

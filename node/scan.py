"""Reading and hashing a table in a child process, for reconcile.

Hashing every row (two HMACs and a SHA-256, about 5 us a row) is most of a reconcile's
CPU. In a child process it runs on the second core while the parent fetches and verifies
the anchor records and compares; one child, so a PostgreSQL table is still read in one
snapshot. Rows cross the pipe packed: ``pseudonym || commitment`` for every row in one
bytes object, with the keys and versions as two lists of strings (needed for findings).
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from typing import Any

from ledger.anchors import RowHasher, RowKeys
from node.sources import Source, SourceError, TableSpec

QUEUE_BATCHES = 8
"""Hashed batches waiting for the parent: bounds memory if the parent is slower."""
DIGESTS = 64
"""Bytes per row in a packed batch: 32 of pseudonym, 32 of commitment."""

ScanBatch = tuple[bytes, list[str], list[str]]


def _scan(dsn: str, spec: TableSpec, keys: RowKeys, out: Any) -> None:
    """The child: read, hash, pack; ``None`` at the end, a ``str`` on failure."""
    try:
        hasher = RowHasher(keys, spec.columns)
        with Source.open(dsn) as db:
            for batch in db.rows(spec):
                digests = hasher.digest_many(batch)
                out.put((b"".join([nym + commit for _, nym, _, commit in digests]),
                         [d[0] for d in digests], [d[2] for d in digests]))
        out.put(None)
    except BaseException as exc:  # the parent reports it; the child has no terminal
        out.put(f"reading {spec.table!r} failed: {exc}")


class ScanProcess:
    """One child scanning one table; a context manager that always reaps the child."""

    def __init__(self, dsn: str, spec: TableSpec, keys: RowKeys) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a gRPC process
        self._queue: Any = context.Queue(maxsize=QUEUE_BATCHES)
        self._process = context.Process(target=_scan, args=(dsn, spec, keys, self._queue),
                                        name="reconcile-scan", daemon=True)

    def __enter__(self) -> ScanProcess:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=30)
        self._queue.close()

    def batches(self) -> Iterator[ScanBatch]:
        while True:
            try:
                item = self._queue.get(timeout=5)
            except queue.Empty:
                if not self._process.is_alive():
                    raise SourceError(f"the table scan process ended unexpectedly (exit code"
                                      f" {self._process.exitcode})") from None
                continue
            if item is None:
                return
            if isinstance(item, str):
                raise SourceError(item)
            yield item

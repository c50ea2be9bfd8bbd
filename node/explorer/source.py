"""What the explorer reads: a narrow protocol over a ledger's read API.

The explorer never writes. It is written against ``LedgerReader``, the read methods of
``ledger.ledger_store.Ledger``, so the same pages serve a running node's store, a store
opened read-only by another process (``open_store_reader``), or a static export whose
reader mimics the same methods.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ledger.blocks import Block
from ledger.errors import FormatError
from ledger.export import ExportReader
from ledger.genesis import Genesis, genesis_hash
from ledger.ledger_store import Head, Ledger, open_readonly


class LedgerReader(Protocol):
    """The read API the explorer needs (``Ledger`` implements it)."""

    @property
    def head(self) -> Head: ...

    def record(self, index: int) -> bytes: ...

    def index_of(self, rid: bytes) -> int | None: ...

    def block(self, height: int) -> Block: ...

    def blocks(self, start: int = 1) -> Iterator[Block]: ...

    def certificate(self, height: int) -> bytes | None: ...

    def checkpoint(self, size: int) -> bytes | None: ...

    def latest_checkpoint(self) -> tuple[int, bytes] | None: ...

    def receipt(self, index: int, size: int | None = None) -> bytes: ...


class RefreshingLedger:
    """A ``Ledger`` over a store that another process (a running node) keeps writing.

    Each read first picks up newly committed blocks (one read of the chain head when
    nothing changed), so the explorer shows the live ledger, not the one at open time.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()  # one reload at a time: it rebuilds the tree cache

    @property
    def head(self) -> Head:
        with self._lock:
            return self._ledger.refresh()

    def record(self, index: int) -> bytes:
        return self._ledger.record(index)

    def index_of(self, rid: bytes) -> int | None:
        return self._ledger.index_of(rid)

    def block(self, height: int) -> Block:
        return self._ledger.block(height)

    def blocks(self, start: int = 1) -> Iterator[Block]:
        return self._ledger.blocks(start)

    def certificate(self, height: int) -> bytes | None:
        return self._ledger.certificate(height)

    def checkpoint(self, size: int) -> bytes | None:
        return self._ledger.checkpoint(size)

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        return self._ledger.latest_checkpoint()

    def receipt(self, index: int, size: int | None = None) -> bytes:
        with self._lock:  # the latest checkpoint may be newer than the cached tree
            self._ledger.refresh()
            return self._ledger.receipt(index, size)

    def close(self) -> None:
        self._ledger.storage.close()


def open_store_reader(data_dir: Path, genesis_bytes: bytes) -> RefreshingLedger:
    """A node's LMDB store, opened read-only (the node may keep running)."""
    Genesis.from_bytes(genesis_bytes)  # refuse a file that is not a genesis up front
    return RefreshingLedger(open_readonly(data_dir, genesis_hash(genesis_bytes)))


def open_export_reader(folder: Path, genesis_bytes: bytes) -> ExportReader:
    """A static export (``shadowledger export``) of the network this genesis starts."""
    Genesis.from_bytes(genesis_bytes)
    reader = ExportReader(folder)
    if reader.genesis_hash != genesis_hash(genesis_bytes):
        raise FormatError(f"{folder}: the export is of another network than this genesis "
                          f"(genesis hash {reader.genesis_hash.hex()[:16]}...)")
    return reader

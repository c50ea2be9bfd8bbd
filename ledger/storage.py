"""The one LMDB environment of a node: opening, sub-databases, durable write transactions.

Every write goes through ``Storage.write()``: one LMDB write transaction, synced to disk
before the ``with`` block returns (DESIGN.md: a commit is durable before it is
acknowledged). LMDB errors are wrapped into ``StorageError`` at this boundary.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from ledger.errors import CorruptStoreError, StorageError

LAYOUT = b"shadowledger/lmdb/1"
"""Written at creation; a store with another layout is refused, never reinterpreted."""

SUBDBS = (
    b"meta",  # layout, tree size and root, per-component metadata
    b"tree",  # Merkle nodes, chunked per level (ledger.tree_store)
    b"records",  # index -> envelope bytes
    b"record_ids",  # record id -> index
    b"blocks",  # height -> block bytes
    b"certificates",  # height -> commit certificate bytes
    b"checkpoints",  # tree size -> signed checkpoint note bytes
    b"consensus",  # consensus safety state (last signed height/round/step)
    b"policy",  # agreement / ACL state
    b"subjects",  # subject pseudonym || index -> "" (ledger.subjects)
    b"governance",  # memberships adopted, pending proposals (ledger.governance)
)
ADDED_LATER = frozenset({b"governance"})
"""Sub-databases a store written by an older version lacks: a read-only opening (export,
explorer, backup check) reads them as empty instead of refusing the store."""


@dataclass(frozen=True)
class StorageConfig:
    """How the environment is opened. ``map_size`` bounds the file, not memory."""

    map_size: int = 64 << 30
    sync: bool = True
    max_readers: int = 126
    trim_every: int = 16
    """Drop the map's resident pages after this many write transactions (0 = never).

    Each block inserts its record ids at random places of an index, touching up to one
    page per record: trimming often keeps that from piling up between trims."""
    trim_interval_s: float = 0.25
    """... or at the first write this long after the last trim (when ``trim_every`` is
    not 0). The pages mapped between trims grow with the random reads made meanwhile, not
    with the writes: on Linux each page fault on the map also maps up to 15 neighbouring
    pages already in the page cache ("fault-around", which LMDB's MADV_RANDOM does not
    turn off), so 1,000 id lookups in an index of 700 leaf pages mapped 4,200 pages.
    Those are clean page-cache pages, not the node's own memory, but they count in its
    RSS; a short interval keeps that count bounded by the read rate, whatever the
    ledger's size. A trim costs a walk of the mapped page tables, and each later read
    one minor fault."""
    readonly: bool = False
    """Open without writing (explorers, exports and backups of a live store, checks of a
    copy): nothing is created or written, and the store must already exist. LMDB still
    registers readers in ``lock.mdb``, so the writer beside keeps the pages of a reader's
    snapshot intact until it ends."""


class Storage:
    """One LMDB environment with the node's named sub-databases."""

    def __init__(self, path: str | os.PathLike[str], config: StorageConfig | None = None):
        self.path = Path(path)
        self.config = config or StorageConfig()
        readonly = self.config.readonly
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not (self.path / "data.mdb").is_file():
            raise StorageError(f"{self.path}: no ledger store here (data.mdb is missing)")
        _check_file_not_truncated(self.path)
        try:
            self.env = lmdb.open(
                str(self.path),
                map_size=self.config.map_size,
                max_dbs=len(SUBDBS) + 2,
                sync=self.config.sync,
                metasync=self.config.sync,
                max_readers=self.config.max_readers,
                readahead=False,
                readonly=readonly,
                create=not readonly,
            )
            self.dbs: dict[bytes, Any] = {}
            for name in SUBDBS:
                try:
                    self.dbs[name] = self.env.open_db(name, create=not readonly)
                except lmdb.NotFoundError:
                    if not (readonly and name in ADDED_LATER):
                        raise
        except lmdb.NotFoundError as exc:
            raise CorruptStoreError(f"{self.path}: a sub-database is missing ({exc})") from exc
        except lmdb.InvalidError as exc:
            raise CorruptStoreError(f"{self.path}: not a valid LMDB environment ({exc})") from exc
        except lmdb.Error as exc:
            raise StorageError(f"{self.path}: cannot open the store ({exc})") from exc
        self._abort_hooks: list[Callable[[], None]] = []
        self._commit_hooks: list[Callable[[], None]] = []
        # LMDB releases its writer lock at commit, before the hooks below run: without this
        # lock a second thread's write could begin in between, and a hook (TreeStore
        # publishing its size) would publish that thread's uncommitted appends.
        self._write_lock = threading.RLock()
        self._writes = 0
        self._trimmed_at = time.monotonic()
        self._check_layout()

    def _check_layout(self) -> None:
        if self.config.readonly:
            with self.env.begin(db=self.dbs[b"meta"]) as txn:
                layout = txn.get(b"layout")
            if layout != LAYOUT:
                raise CorruptStoreError(
                    f"{self.path}: store layout is {layout!r}, this version reads {LAYOUT!r}"
                )
            return
        with self.env.begin(write=True, db=self.dbs[b"meta"]) as txn:
            layout = txn.get(b"layout")
            if layout is None:
                if txn.stat(self.dbs[b"records"])["entries"]:
                    raise CorruptStoreError(f"{self.path}: records present but layout missing")
                txn.put(b"layout", LAYOUT)
            elif layout != LAYOUT:
                raise CorruptStoreError(
                    f"{self.path}: store layout is {layout!r}, this version reads {LAYOUT!r}"
                )

    def db(self, name: bytes) -> Any:
        return self.dbs[name]

    def has_db(self, name: bytes) -> bool:
        """False only for a sub-database added later, in a read-only older store."""
        return name in self.dbs

    def on_abort(self, hook: Callable[[], None]) -> None:
        """Register a cache-invalidation hook, run when a write transaction is aborted."""
        self._abort_hooks.append(hook)

    def on_commit(self, hook: Callable[[], None]) -> None:
        """Register a hook run after a write transaction is durably committed."""
        self._commit_hooks.append(hook)

    @contextmanager
    def write(self) -> Iterator[Any]:
        """One durable write transaction: committed and synced on exit, aborted on error."""
        if self.config.readonly:
            raise StorageError(f"{self.path}: opened read-only; no write is possible")
        with self._write_lock:
            yield from self._write()

    def _write(self) -> Iterator[Any]:
        txn = self.env.begin(write=True)
        try:
            yield txn
            txn.commit()
        except BaseException as exc:
            txn.abort()
            for hook in self._abort_hooks:
                hook()
            if isinstance(exc, lmdb.MapFullError):
                raise StorageError(
                    f"{self.path}: the store is full (map_size {self.config.map_size} bytes);"
                    " raise storage.map_size in the node config and restart"
                ) from exc
            if isinstance(exc, lmdb.Error):
                raise StorageError(f"{self.path}: write failed ({exc})") from exc
            raise
        for hook in self._commit_hooks:
            hook()
        self._writes += 1
        if self.config.trim_every and (
                self._writes % self.config.trim_every == 0
                or time.monotonic() - self._trimmed_at >= self.config.trim_interval_s):
            self.trim_resident()

    def trim_resident(self) -> int:
        """Unmap the data file's pages from this process; return the bytes advised.

        LMDB reads through a read-only shared map, so every page ever read (the right edge
        of each B-tree as it fills, every tile a proof touched) stays in this process's
        resident set: RSS would grow with the ledger. The pages are clean copies of the
        file, so dropping them is safe: the next access faults them back from the page
        cache. This keeps a node's memory flat however large its ledger grows.
        """
        self._trimmed_at = time.monotonic()
        return _madvise_dontneed(self.path / "data.mdb")

    @contextmanager
    def read(self, buffers: bool = False) -> Iterator[Any]:
        """A consistent read-only snapshot. ``buffers``: ``get`` returns memoryviews into
        the map, valid only inside the transaction (and read without releasing the GIL)."""
        with (self.env.begin(buffers=True) if buffers else self.env.begin()) as txn:
            yield txn

    def copy_to(self, dest: str | os.PathLike[str]) -> None:
        """Online, compacted, consistent copy of the environment (for backups).

        LMDB copies inside one read transaction, so the copy is the state of one commit
        even while a writer goes on; ``dest`` must be an empty folder."""
        Path(dest).mkdir(parents=True, exist_ok=True)
        try:
            self.env.copy(str(dest), compact=True)
        except lmdb.Error as exc:
            raise StorageError(f"{self.path}: copy to {dest} failed ({exc})") from exc

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_MADV_DONTNEED = 4


def _madvise_dontneed(data_file: Path) -> int:
    """MADV_DONTNEED every mapping of ``data_file`` in this process (Linux; else no-op)."""
    import ctypes
    import ctypes.util

    try:
        maps = Path("/proc/self/maps").read_text()
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return 0
    target = str(data_file.resolve())
    advised = 0
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == target and "w" not in parts[1]:
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start),
                            _MADV_DONTNEED) == 0:
                advised += end - start
    return advised


def _check_file_not_truncated(path: Path) -> None:
    """Refuse a data file shorter than its last used page.

    Reading a page past the end of a memory-mapped file kills the process with SIGBUS;
    checking the size against the newest meta page first turns that into a clear error.
    """
    data = path / "data.mdb"
    if not data.exists():
        return
    size = data.stat().st_size
    with data.open("rb") as f:
        head = f.read(2 * 4096)
    last_page = _last_page_from_meta(head)
    if last_page is None:
        raise CorruptStoreError(f"{data}: no valid LMDB meta page (file is {size} bytes)")
    page_size, last_pgno = last_page
    if size < (last_pgno + 1) * page_size:
        raise CorruptStoreError(
            f"{data}: truncated: {size} bytes, but pages up to {last_pgno} are in use"
            f" ({(last_pgno + 1) * page_size} bytes); restore from a backup or a peer"
        )


def _last_page_from_meta(head: bytes) -> tuple[int, int] | None:
    """(page size, last page number) from the newer of LMDB's two meta pages."""
    magic = 0xBEEFC0DE
    best: tuple[int, int, int] | None = None
    # Meta page layout (lmdb mdb.c, 64-bit): page header 16 bytes, then MDB_meta:
    # magic u32, version u32, address ptr, mapsize size_t, 2 x MDB_db (48 bytes each),
    # last_pg pgno_t, txnid txnid_t. The page size is the free DB's md_pad field.
    for offset in _meta_offsets(head):
        body = head[offset + 16 :]
        if len(body) < 136:
            continue
        magic_v, _version = struct.unpack_from("<II", body, 0)
        if magic_v != magic:
            continue
        page_size = struct.unpack_from("<I", body, 24)[0]
        last_pgno, txnid = struct.unpack_from("<QQ", body, 24 + 96)
        if best is None or txnid > best[2]:
            best = (page_size, last_pgno, txnid)
    return None if best is None else (best[0], best[1])


def _meta_offsets(head: bytes) -> list[int]:
    if len(head) < 16 + 32:
        return []
    # The first meta page is at 0; the second at one page size, read from the first.
    page_size = struct.unpack_from("<I", head, 16 + 24)[0]
    offsets = [0]
    if 512 <= page_size <= len(head) - 16:
        offsets.append(page_size)
    return offsets

"""A persistent RFC 9162 Merkle tree in LMDB.

Layout: every complete node is stored once, in *tiles*: a tile holds the nodes of a
perfect subtree of height ``TILE_HEIGHT`` (its bottom row and every row above it, but not
its root, which belongs to the tile above). Key = tile level (1 byte) || tile number
(8 bytes, big-endian); value = the 62 node slots (unfilled ones zero) || CRC-32 of key and
slots. A 1,000-leaf append writes about 40 tiles; a proof in a tree of 2^20 leaves reads 4.
So appends and proofs cost O(n / 32) and O(log n / 5) reads. The right edge of each level
and the rightmost tile of each tile level are cached, so an append never reads back.

Integrity: every tile read is checked against its CRC; opening the store checks that
each level holds exactly ``size >> level`` nodes, that the right edge of each level hashes
to the level above, and that the stored root is the root of the stored nodes. A full
re-hash of every level is ``TreeStore.check_all``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

from ledger import merkle
from ledger.errors import CorruptStoreError, UsageError
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.storage import Storage

TILE_HEIGHT = 5
"""Levels per stored tile. A tile holds a perfect subtree of height 5 minus its root:
32 + 16 + 8 + 4 + 2 = 62 hashes (1,984 bytes), small enough for LMDB leaf pages."""
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_NODES = 2 * TILE_WIDTH - 2
_HS = merkle.HASH_SIZE
TILE_BYTES = TILE_NODES * _HS
_LEVEL_OFFSET = [sum(TILE_WIDTH >> m for m in range(k)) for k in range(TILE_HEIGHT)]
"""Position of each in-tile level's first node: levels are stored bottom first."""

_KEY = struct.Struct(">BQ")
_U64 = struct.Struct(">Q")
_CRC = struct.Struct(">I")
_META_SIZE = b"tree.size"
_META_ROOT = b"tree.root"
_EMPTY_TILE = bytes(TILE_BYTES)


def _locate(level: int, index: int) -> tuple[bytes, int]:
    """(tile key, byte offset in the tile) of node (level, index)."""
    t, k = divmod(level, TILE_HEIGHT)
    shift = TILE_HEIGHT - k
    pos = _LEVEL_OFFSET[k] + (index & ((1 << shift) - 1))
    return _KEY.pack(t, index >> shift), pos * _HS


def _seal(key: bytes, body: bytes | bytearray) -> bytes:
    return bytes(body) + _CRC.pack(zlib.crc32(body, zlib.crc32(key)))


def _unseal(key: bytes, value: bytes | None) -> bytes:
    """The body of a tile, after checking its length and CRC."""
    if value is None or len(value) != TILE_BYTES + 4:
        raise CorruptStoreError(f"tree tile {key.hex()} is missing or has a bad length")
    body = value[:-4]
    if _CRC.unpack(value[-4:])[0] != zlib.crc32(body, zlib.crc32(key)):
        raise CorruptStoreError(f"tree tile {key.hex()} fails its checksum")
    return body


class TreeStore(merkle.ProvingTree):
    """Append-only Merkle tree over a ``Storage``; usable inside a caller's transaction."""

    def __init__(self, storage: Storage, limits: Limits = DEFAULT_LIMITS) -> None:
        self._storage = storage
        self._db = storage.db(b"tree")
        self._meta = storage.db(b"meta")
        self._limits = limits
        self._size = 0  # committed: what readers may see
        self._working = 0  # including appends of a write transaction not yet committed
        self._edges: list[bytes] = []  # the last complete node of each level
        self._open: dict[int, tuple[int, bytearray]] = {}  # tile level -> rightmost tile
        storage.on_abort(self._load)
        storage.on_commit(self._publish)
        self._load()
        self.check_edges()

    @property
    def size(self) -> int:
        return self._size

    # --- appending ---------------------------------------------------------------------

    def append(self, txn: Any, hashes: Sequence[bytes]) -> int:
        """Append leaf hashes inside the write transaction ``txn``; return the new size.

        The caller commits ``txn`` (``Storage.write``); if it aborts, the cache is reloaded.
        """
        if not hashes:
            return self._working
        if len(hashes) > self._limits.max_batch_leaves:
            raise UsageError(f"batch of {len(hashes)} leaves exceeds the limit")
        old = self._working
        dirty: dict[tuple[int, int], bytearray] = {}
        level, row = 0, list(hashes)
        while row:
            start = old >> level
            self._place(dirty, level, start, row)
            if level == len(self._edges):
                self._edges.append(row[-1])
            # A stored left sibling pairs with the first new node when start is odd.
            pairs = [self._edges[level], *row] if start & 1 else row
            self._edges[level] = row[-1]
            row = merkle.parent_level(pairs)
            level += 1
        for (t, j), buf in dirty.items():
            key = _KEY.pack(t, j)
            txn.put(key, _seal(key, buf), db=self._db)
            if t not in self._open or self._open[t][0] <= j:
                self._open[t] = (j, buf)
        self._working = old + len(hashes)
        txn.put(_META_SIZE, _U64.pack(self._working), db=self._meta)
        txn.put(_META_ROOT, self.current_root(), db=self._meta)
        return self._working

    def _publish(self) -> None:
        """After the commit: readers may now see the appended leaves."""
        self._size = self._working

    def append_durably(self, hashes: Sequence[bytes]) -> int:
        """Append in a transaction of its own, synced to disk before returning."""
        with self._storage.write() as txn:
            return self.append(txn, hashes)

    def _place(
        self, dirty: dict[tuple[int, int], bytearray], level: int, start: int, row: list[bytes]
    ) -> None:
        """Copy nodes ``start ..`` of ``level`` into the tiles that hold them."""
        t, k = divmod(level, TILE_HEIGHT)
        shift = TILE_HEIGHT - k
        end = start + len(row)
        for j in range(start >> shift, ((end - 1) >> shift) + 1):
            lo, hi = max(start, j << shift), min(end, (j + 1) << shift)
            buf = dirty.get((t, j))
            if buf is None:
                opened = self._open.get(t)
                buf = bytearray(opened[1]) if opened and opened[0] == j else bytearray(_EMPTY_TILE)
                dirty[(t, j)] = buf
            off = (_LEVEL_OFFSET[k] + (lo & ((1 << shift) - 1))) * _HS
            buf[off : off + (hi - lo) * _HS] = b"".join(row[lo - start : hi - start])

    # --- reading -----------------------------------------------------------------------

    def nodes(self, wanted: Sequence[merkle.Node], txn: Any = None) -> list[bytes]:
        """``merkle.NodeSource`` hook: hashes of perfect subtrees, one read per tile."""
        if txn is None:
            with self._storage.read() as rtxn:
                return self.nodes(wanted, rtxn)
        tiles: dict[bytes, bytes] = {}
        out = []
        get, db, size = txn.get, self._db, self._size
        for level, index in wanted:
            if index >= size >> level:
                raise UsageError(f"node ({level}, {index}) is not complete at size {size}")
            key, off = _locate(level, index)
            body = tiles.get(key)
            if body is None:
                body = tiles[key] = _unseal(key, get(key, db=db))
            out.append(body[off : off + _HS])
        return out

    # --- cache and integrity -----------------------------------------------------------

    def current_root(self) -> bytes:
        """Root at the current size (uncommitted appends included), from cached edges."""
        if self._working == 0:
            return merkle.EMPTY_ROOT
        peaks = [self._edges[lv] for lv in range(len(self._edges)) if self._working >> lv & 1]
        return merkle.fold_right(peaks[::-1])

    def _load(self) -> None:
        """(Re)load the size, right edges and open tiles from the committed state."""
        with self._storage.read() as txn:
            raw = txn.get(_META_SIZE, db=self._meta)
            self._size = self._working = 0 if raw is None else _U64.unpack(raw)[0]
            levels = self._size.bit_length()
            self._edges = self.nodes([(lv, (self._size >> lv) - 1) for lv in range(levels)], txn)
            self._open = {}
            for t in range(0, levels, TILE_HEIGHT):
                self._load_open_tile(txn, t // TILE_HEIGHT)
            self._check_absent(txn, _KEY.pack((levels + TILE_HEIGHT - 1) // TILE_HEIGHT, 0))

    def reload(self) -> None:
        """Re-read the committed state another process wrote, and check its right edge."""
        self._load()
        self.check_edges()

    def _load_open_tile(self, txn: Any, t: int) -> None:
        bottom = self._size >> (t * TILE_HEIGHT)
        tiles = (bottom + TILE_WIDTH - 1) >> TILE_HEIGHT
        self._check_absent(txn, _KEY.pack(t, tiles))
        if bottom % TILE_WIDTH:
            key = _KEY.pack(t, tiles - 1)
            self._open[t] = (tiles - 1, bytearray(_unseal(key, txn.get(key, db=self._db))))

    def _check_absent(self, txn: Any, key: bytes) -> None:
        if txn.get(key, db=self._db) is not None:
            raise CorruptStoreError(
                f"tree tile {key.hex()} lies beyond the stored size {self._size}:"
                " the size record was rolled back or the store is corrupt"
            )

    def check_edges(self) -> None:
        """Cheap open-time check: right edges hash up, and the stored root matches."""
        with self._storage.read() as txn:
            stored_root = txn.get(_META_ROOT, db=self._meta)
            for level in range(1, self._size.bit_length()):
                index = (self._size >> level) - 1
                left, right, parent = self.nodes(
                    [(level - 1, 2 * index), (level - 1, 2 * index + 1), (level, index)], txn
                )
                if merkle.node_hash(left, right) != parent:
                    raise CorruptStoreError(f"tree node ({level}, {index}) does not match")
        if self._size and stored_root != merkle.root_from(self, self._size):
            raise CorruptStoreError("stored tree root differs from the root of stored nodes")

    def check_all(self, batch: int = 1 << 14) -> int:
        """Re-hash every level from the leaves up; return the number of nodes checked.

        Streams each level in batches of ``batch`` parents, so memory stays bounded
        however large the tree (a restore checks the whole tree of a big ledger)."""
        checked = self._size
        with self._storage.read() as txn:
            level = 1
            while self._size >> level:
                count = self._size >> level
                for start in range(0, count, batch):
                    end = min(count, start + batch)
                    below = self.nodes([(level - 1, i) for i in range(2 * start, 2 * end)], txn)
                    stored = self.nodes([(level, i) for i in range(start, end)], txn)
                    if stored != merkle.parent_level(below):
                        raise CorruptStoreError(
                            f"tree level {level} does not hash from level below")
                checked += count
                level += 1
        return checked

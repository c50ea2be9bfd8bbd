"""A static export of the ledger: C2SP tlog-tiles plus blocks, certificates, checkpoints.

Layout (docs/EXPORT.md has the exact format of every file):
    checkpoint                         latest final checkpoint (C2SP signed note)
    tile/<L>/<N>[.p/<W>]               RFC 9162 hash tiles (C2SP tlog-tiles)
    tile/entries/<N>[.p/<W>]           entry bundles: the exact envelope bytes (the leaves)
    shadowledger/export.json           format, origin, genesis hash, tree size, height
    shadowledger/headers/<N>[.p/<W>]       block headers,        item h-1 = block h
    shadowledger/certificates/<N>[.p/<W>]  commit certificates,  item h-1 = block h
    shadowledger/checkpoints/<N>[.p/<W>]   final checkpoints,    item h-1 = block h
The ``shadowledger/`` series use tlog-tiles coordinates and entry-bundle encoding over
block heights, so one path function finds every file and a partial last file grows the
same way. A block's envelopes are not copied: they are entries ``tree_size - count ..
tree_size - 1`` of the log.

``ExportReader`` reads an export with the read API of ``ledger.ledger_store.Ledger``, so
tools written for a node's store (the explorer) run over a copy served by any web server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ledger import merkle
from ledger.blocks import Block, BlockHeader
from ledger.errors import FormatError, UsageError
from ledger.ledger_store import Head
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.membership_chain import CHAIN_FILE
from ledger.records import Envelope
from ledger.tiles import (
    TILE_HEIGHT,
    Tile,
    decode_bundle,
    split_hashes,
    tile_of,
)
from ledger.tlogproof import TlogProof

EXPORT_FORMAT = "shadowledger/export/v1"
MANIFEST = "shadowledger/export.json"
CHECKPOINT = "checkpoint"
HEADERS = "shadowledger/headers"
CERTIFICATES = "shadowledger/certificates"
CHECKPOINTS = "shadowledger/checkpoints"
BLOCK_SERIES = (HEADERS, CERTIFICATES, CHECKPOINTS)
MAX_MANIFEST_BYTES = 64 * 1024


def series_path(series: str, tile: Tile) -> str:
    """Path of one file of a per-block series (``shadowledger/<series>/<N>[.p/<W>]``)."""
    return f"{series}/{tile.suffix()}"


@dataclass(frozen=True)
class Manifest:
    """``shadowledger/export.json``: what the export holds and which ledger it is of."""

    origin: str
    genesis_hash: bytes
    tree_size: int
    height: int

    def to_bytes(self) -> bytes:
        doc = {"format": EXPORT_FORMAT, "origin": self.origin,
               "genesis_sha256": self.genesis_hash.hex(), "tree_size": self.tree_size,
               "height": self.height}
        return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        if len(data) > MAX_MANIFEST_BYTES:
            raise FormatError(f"{MANIFEST} is {len(data)} bytes, over {MAX_MANIFEST_BYTES}")
        try:
            doc = json.loads(data)
            if doc.get("format") != EXPORT_FORMAT:
                raise FormatError(f"{MANIFEST}: format {doc.get('format')!r},"
                                  f" want {EXPORT_FORMAT}")
            manifest = cls(str(doc["origin"]), bytes.fromhex(doc["genesis_sha256"]),
                           int(doc["tree_size"]), int(doc["height"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"{MANIFEST} is not a valid {EXPORT_FORMAT} manifest: {exc}"
                              ) from exc
        if manifest.tree_size < 0 or manifest.height < 0 or len(manifest.genesis_hash) != 32:
            raise FormatError(f"{MANIFEST}: bad tree size, height or genesis hash")
        return manifest


def read_manifest(folder: Path) -> Manifest:
    """The export's manifest; OSError if absent (not an export), FormatError if invalid."""
    return Manifest.from_bytes((folder / MANIFEST).read_bytes())


class ExportReader:
    """Read an export as a ``Ledger``: records, blocks, certificates, checkpoints, proofs.

    Reads trust the files (the explorer's view); ``ledger.audit`` is what checks them.
    A missing or malformed file raises ``FormatError`` naming the file.
    """

    def __init__(self, folder: str | Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.folder = Path(folder)
        self.limits = limits
        manifest = read_manifest(self.folder)
        self.origin = manifest.origin
        self.genesis_hash = manifest.genesis_hash
        self.tree_size = manifest.tree_size
        self.height = manifest.height
        self.tree = TileTree(self)
        self._ids: dict[bytes, int] | None = None
        self._items = lru_cache(maxsize=16)(self._load_items)

    @property
    def head(self) -> Head:
        """Height, hash and tree size of the last exported block (as ``Ledger.head``)."""
        last = self.header(self.height).hash if self.height else self.genesis_hash
        return Head(self.height, last, self.tree_size)

    def close(self) -> None:
        """Nothing to release (every read opens and closes its file); here so the reader
        can stand in for a store-backed one (the explorer closes what it opened)."""

    # --- files -------------------------------------------------------------------------

    def read(self, relative: str) -> bytes:
        """One file of the export; FormatError if it is missing (the export is incomplete)."""
        try:
            return (self.folder / relative).read_bytes()
        except FileNotFoundError as exc:
            raise FormatError(f"{relative} is missing from the export") from exc

    def membership_chain(self) -> bytes | None:
        """The export's membership chain (``membership-chain.json``), None if it has none
        (no membership change within the export)."""
        try:
            return (self.folder / CHAIN_FILE).read_bytes()
        except FileNotFoundError:
            return None

    def tile_hashes(self, tile: Tile) -> list[bytes]:
        data = self.read(tile.path())
        try:
            return split_hashes(data, tile.width)
        except FormatError as exc:
            raise FormatError(f"{tile.path()}: {exc}") from exc

    def items(self, series: str, tile: Tile) -> list[tuple[int, bytes]]:
        """(byte offset, item) of one bundle file: ``tile/entries`` or a block series."""
        return self._items(series, tile)

    def _load_items(self, series: str, tile: Tile) -> list[tuple[int, bytes]]:
        path = tile.entries_path() if series == "entries" else series_path(series, tile)
        data = self.read(path)
        try:
            return decode_bundle(data, tile.width)
        except FormatError as exc:
            raise FormatError(f"{path}: {exc}") from exc

    def _item(self, series: str, count: int, position: int) -> bytes:
        tile = tile_of(count, position)
        return self.items(series, tile)[position - tile.first][1]

    # --- the Ledger read API -----------------------------------------------------------

    def record(self, index: int) -> bytes:
        if not 0 <= index < self.tree_size:
            raise UsageError(f"no record at index {index} (ledger size {self.tree_size})")
        return self._item("entries", self.tree_size, index)

    def records(self, start: int, stop: int) -> Iterator[bytes]:
        if not 0 <= start <= stop <= self.tree_size:
            raise UsageError(f"records {start}..{stop} are not in the export")
        for index in range(start, stop):
            yield self.record(index)

    def index_of(self, rid: bytes) -> int | None:
        """Index of a record id (the first call reads every entry once to build the map)."""
        if self._ids is None:
            self._ids = {Envelope.from_bytes(env, self.limits).record_id: i
                         for i, env in enumerate(self.records(0, self.tree_size))}
        return self._ids.get(rid)

    def header(self, height: int) -> BlockHeader:
        if not 1 <= height <= self.height:
            raise UsageError(f"no block at height {height} (head {self.height})")
        return BlockHeader.from_bytes(self._item(HEADERS, self.height, height - 1))

    def block(self, height: int) -> Block:
        header = self.header(height)
        first = header.tree_size - header.record_count
        return Block(header, tuple(self.records(first, header.tree_size)))

    def blocks(self, start: int = 1) -> Iterator[Block]:
        for height in range(start, self.height + 1):
            yield self.block(height)

    def certificate(self, height: int) -> bytes | None:
        if not 1 <= height <= self.height:
            return None
        return self._item(CERTIFICATES, self.height, height - 1) or None

    def checkpoint(self, size: int) -> bytes | None:
        height = self._first_height_of_size(size)
        if height is None:
            return None
        return self._item(CHECKPOINTS, self.height, height - 1) or None

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        return self.tree_size, self.read(CHECKPOINT)

    def receipt(self, index: int, size: int | None = None) -> bytes:
        """A C2SP tlog-proof@v1 for record ``index`` against the checkpoint at ``size``."""
        if size is None:
            size, note = self.tree_size, self.read(CHECKPOINT)
        else:
            stored = self.checkpoint(size)
            if stored is None:
                raise UsageError(f"no checkpoint is stored for tree size {size}")
            note = stored
        return TlogProof(index, tuple(self.tree.inclusion_proof(index, size)), note).to_bytes()

    def consistency_proof(self, size1: int, size2: int) -> Sequence[bytes]:
        return self.tree.consistency_proof(size1, size2)

    def _first_height_of_size(self, size: int) -> int | None:
        """The first block whose tree size is ``size`` (binary search over headers)."""
        lo, hi = 1, self.height
        while lo < hi:
            mid = (lo + hi) // 2
            if self.header(mid).tree_size < size:
                lo = mid + 1
            else:
                hi = mid
        if self.height and self.header(lo).tree_size == size:
            return lo
        return None


class TileTree(merkle.ProvingTree):
    """``merkle.NodeSource`` over hash tiles: a node of level 8L + k is hashed up from
    the 2^k hashes of level 8L that it covers (one tile read)."""

    def __init__(self, reader: ExportReader) -> None:
        self._reader = reader
        self._size = reader.tree_size
        self._tiles = lru_cache(maxsize=64)(reader.tile_hashes)

    @property
    def size(self) -> int:
        return self._size

    def nodes(self, wanted: Sequence[merkle.Node]) -> list[bytes]:
        out = []
        for level, index in wanted:
            if not 0 <= index < self.size >> level:
                raise UsageError(f"node ({level}, {index}) is not complete at size {self.size}")
            tile_level, k = divmod(level, TILE_HEIGHT)
            lo = index << k
            tile = tile_of(self.size >> (tile_level * TILE_HEIGHT), lo, tile_level)
            hashes = self._tiles(tile)[lo - tile.first : lo - tile.first + (1 << k)]
            out.append(merkle.root(hashes) if k else hashes[0])
        return out

"""C2SP tlog-tiles (c2sp.org/tlog-tiles): tile coordinates, paths and entry bundles.

A log of ``size`` entries is served as static files:
- ``tile/<L>/<N>[.p/<W>]``: hash tile ``N`` of level ``L`` holds the RFC 9162 node hashes
  of tree level ``8 * L``, indices ``256 * N .. 256 * N + W - 1``, concatenated (32 bytes
  each). A full tile has ``W = 256`` and no ``.p/<W>`` suffix; only the rightmost tile
  of a level can be partial (``1 <= W <= 255``).
- ``tile/entries/<N>[.p/<W>]``: the entries of level-0 tile ``N``, each as a big-endian
  uint16 length followed by the entry bytes.
``<N>`` is written in 3-digit path elements, all but the last prefixed with ``x``
(1234067 -> ``x001/x234/067``).

The same coordinates and bundle encoding serve this ledger's own per-block files
(``ledger/export.py``), so every file of an export is found with one path function.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ledger.errors import FormatError, UsageError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes (or entries) in a full tile: 256."""
HASH_SIZE = 32
MAX_ENTRY_BYTES = 0xFFFF
"""An entry bundle prefixes each entry with a uint16 length."""
MAX_LEVEL = 63

_U16 = struct.Struct(">H")


@dataclass(frozen=True)
class Tile:
    """One file of a tiled log: tile ``index`` of a series, ``width`` items long."""

    level: int
    index: int
    width: int

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL or self.index < 0:
            raise UsageError(f"no tile at level {self.level}, index {self.index}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise UsageError(f"tile width {self.width} is not in 1..{TILE_WIDTH}")

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def first(self) -> int:
        """Position (at the tile's own level) of its first item."""
        return self.index * TILE_WIDTH

    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]``."""
        return f"tile/{self.level}/{self.suffix()}"

    def entries_path(self) -> str:
        """``tile/entries/<N>[.p/<W>]`` (level-0 coordinates only)."""
        return f"tile/entries/{self.suffix()}"

    def suffix(self) -> str:
        """``<N>[.p/<W>]``: the part of a path after the series' folder."""
        name = index_path(self.index)
        return f"{name}.p/{self.width}" if self.partial else name


def index_path(n: int) -> str:
    """tlog-tiles ``<N>``: 3-digit elements, all but the last prefixed with ``x``."""
    if n < 0:
        raise UsageError(f"tile index {n} is negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def tiles_for(count: int, level: int = 0) -> list[Tile]:
    """The tiles that hold ``count`` items of one series (full ones, then a partial one)."""
    full, rest = divmod(count, TILE_WIDTH)
    tiles = [Tile(level, n, TILE_WIDTH) for n in range(full)]
    if rest:
        tiles.append(Tile(level, full, rest))
    return tiles


def tile_of(count: int, index: int, level: int = 0) -> Tile:
    """The tile of a ``count``-item series that holds item ``index``."""
    if not 0 <= index < count:
        raise UsageError(f"item {index} is not in a series of {count}")
    n = index // TILE_WIDTH
    return Tile(level, n, min(TILE_WIDTH, count - n * TILE_WIDTH))


def hash_levels(tree_size: int) -> int:
    """Number of hash tile levels of a tree: levels L with ``tree_size >> 8L`` > 0."""
    levels = 0
    while tree_size >> (TILE_HEIGHT * levels):
        levels += 1
    return levels


def grown_tiles(old_count: int, new_count: int, level: int = 0) -> list[Tile]:
    """Tiles whose content differs between a series of ``old_count`` and ``new_count``."""
    if new_count < old_count:
        raise UsageError(f"a series cannot shrink from {old_count} to {new_count}")
    first = old_count // TILE_WIDTH
    return [t for t in tiles_for(new_count, level)[first:]
            if t.width > min(TILE_WIDTH, max(0, old_count - t.first))]


def encode_bundle(entries: list[bytes]) -> bytes:
    """tlog-tiles entry bundle: each entry as a big-endian uint16 length, then its bytes."""
    parts = []
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise UsageError(f"entry of {len(entry)} bytes does not fit a uint16 length")
        parts += [_U16.pack(len(entry)), entry]
    return b"".join(parts)


def decode_bundle(data: bytes, count: int) -> list[tuple[int, bytes]]:
    """``count`` entries of a bundle, each with the byte offset of its length prefix."""
    out = list(_bundle_items(data))
    if len(out) != count:
        raise FormatError(f"entry bundle holds {len(out)} entries, expected {count}")
    return out


def _bundle_items(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos, end, unpack = 0, len(data), _U16.unpack_from
    while pos < end:
        if pos + 2 > end:
            raise FormatError(f"entry bundle is truncated inside a length prefix at byte {pos}")
        (size,) = unpack(data, pos)
        if pos + 2 + size > end:
            raise FormatError(
                f"entry at byte {pos} claims {size} bytes, only {end - pos - 2} follow"
            )
        yield pos, data[pos + 2 : pos + 2 + size]
        pos += 2 + size


def split_hashes(data: bytes, width: int) -> list[bytes]:
    """The ``width`` hashes of a hash tile; FormatError if the length is not 32 * width."""
    if len(data) != width * HASH_SIZE:
        raise FormatError(f"hash tile is {len(data)} bytes, expected {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]

"""C2SP tlog-tiles coordinates, paths and entry bundles."""

from __future__ import annotations

import pytest

from ledger.errors import FormatError, UsageError
from ledger.tiles import (
    Tile,
    decode_bundle,
    encode_bundle,
    grown_tiles,
    hash_levels,
    index_path,
    split_hashes,
    tile_of,
    tiles_for,
)


@pytest.mark.parametrize(("n", "path"), [
    (0, "000"), (7, "007"), (999, "999"), (1000, "x001/000"),
    (1234067, "x001/x234/067"),  # the spec's example
    (10**9, "x001/x000/x000/000"),
])
def test_index_paths_follow_the_spec(n: int, path: str) -> None:
    assert index_path(n) == path


def test_tile_paths_full_and_partial() -> None:
    assert Tile(0, 1234067, 256).path() == "tile/0/x001/x234/067"
    assert Tile(2, 3, 17).path() == "tile/2/003.p/17"
    assert Tile(0, 3, 17).entries_path() == "tile/entries/003.p/17"
    with pytest.raises(UsageError):
        Tile(0, 0, 0)
    with pytest.raises(UsageError):
        Tile(0, 0, 257)


def test_tiles_of_a_series() -> None:
    assert tiles_for(0) == []
    assert tiles_for(256) == [Tile(0, 0, 256)]
    assert tiles_for(600, 1) == [Tile(1, 0, 256), Tile(1, 1, 256), Tile(1, 2, 88)]
    assert tile_of(600, 599) == Tile(0, 2, 88)
    assert tile_of(600, 255) == Tile(0, 0, 256)
    with pytest.raises(UsageError):
        tile_of(600, 600)


@pytest.mark.parametrize(("size", "levels"), [(0, 0), (1, 1), (255, 1), (256, 2),
                                              (65535, 2), (65536, 3)])
def test_hash_levels(size: int, levels: int) -> None:
    assert hash_levels(size) == levels


def test_grown_tiles_are_the_ones_that_changed() -> None:
    assert grown_tiles(0, 300) == [Tile(0, 0, 256), Tile(0, 1, 44)]
    assert grown_tiles(300, 300) == []
    assert grown_tiles(300, 600) == [Tile(0, 1, 256), Tile(0, 2, 88)]
    assert grown_tiles(256, 257) == [Tile(0, 1, 1)]
    with pytest.raises(UsageError):
        grown_tiles(10, 9)


def test_bundle_round_trip_with_offsets() -> None:
    entries = [b"", b"a", bytes(300), b"xyz"]
    data = encode_bundle(entries)
    assert data[:2] == b"\x00\x00" and data[2:5] == b"\x00\x01a"
    assert decode_bundle(data, 4) == [(0, b""), (2, b"a"), (5, bytes(300)), (307, b"xyz")]


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x05abc", b"\x00\x01a\x00"])
def test_malformed_bundles_are_refused(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_bundle(data, 1)


def test_bundle_count_is_checked_and_entries_are_bounded() -> None:
    with pytest.raises(FormatError, match="holds 2 entries, expected 3"):
        decode_bundle(encode_bundle([b"a", b"b"]), 3)
    with pytest.raises(UsageError):
        encode_bundle([bytes(0x10000)])


def test_hash_tile_length_is_checked() -> None:
    assert split_hashes(bytes(64), 2) == [bytes(32), bytes(32)]
    with pytest.raises(FormatError):
        split_hashes(bytes(63), 2)

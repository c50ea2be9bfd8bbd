"""Write (or extend) a static export of a ledger store; the layout is in ``ledger/export.py``.

The export ends at the latest final checkpoint: its tree size is the export's size and the
last exported block is the last one within it. Re-running extends an existing export: only
tiles and bundles that grew are written, then the checkpoint and the manifest, last, so a
reader never sees a checkpoint whose tiles are not there yet; superseded partial files are
removed after that. An existing export that is not a prefix of this ledger is refused.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ledger.blocks import BlockHeader
from ledger.checkpoint import Checkpoint
from ledger.errors import FormatError, UsageError
from ledger.export import (
    BLOCK_SERIES,
    CERTIFICATES,
    CHECKPOINT,
    CHECKPOINTS,
    HEADERS,
    MANIFEST,
    Manifest,
    read_manifest,
    series_path,
)
from ledger.ledger_store import Ledger
from ledger.note import Note
from ledger.tiles import TILE_HEIGHT, Tile, encode_bundle, grown_tiles, hash_levels


@dataclass(frozen=True)
class ExportResult:
    origin: str
    tree_size: int
    height: int
    previous_size: int
    previous_height: int
    files_written: int


def export_ledger(ledger: Ledger, out: Path) -> ExportResult:
    """Export ``ledger`` up to its latest final checkpoint into ``out`` (created or extended)."""
    latest = ledger.latest_checkpoint()
    if latest is None:
        raise UsageError("the ledger has no final checkpoint yet: nothing to export")
    size, note = latest
    checkpoint = Checkpoint.from_text(Note.from_bytes(note).text)
    headers = _headers_upto(ledger, size)
    genesis = headers[0].prev_hash if headers else ledger.genesis_hash
    old_size, old_height = _previous(ledger, out, checkpoint.origin, genesis, size)
    writer = _Writer(out)
    for level in range(hash_levels(size)):
        shift = level * TILE_HEIGHT
        for tile in grown_tiles(old_size >> shift, size >> shift, level):
            nodes = [(shift, tile.first + k) for k in range(tile.width)]
            writer.write(tile.path(), b"".join(ledger.tree.nodes(nodes)))
    for tile in grown_tiles(old_size, size):
        envelopes = list(ledger.records(tile.first, tile.first + tile.width))
        writer.write(tile.entries_path(), encode_bundle(envelopes))
    _write_block_series(ledger, writer, headers, old_height)
    writer.write(CHECKPOINT, note)
    writer.write(MANIFEST, Manifest(checkpoint.origin, genesis, size, len(headers)).to_bytes())
    writer.remove_superseded(old_size, size, old_height, len(headers))
    return ExportResult(checkpoint.origin, size, len(headers), old_size, old_height,
                        writer.written)


def _headers_upto(ledger: Ledger, size: int) -> list[BlockHeader]:
    """Headers of the blocks within tree size ``size``; the last one must end exactly there."""
    height = ledger.head.height
    while height and ledger.block(height).header.tree_size > size:
        height -= 1
    headers = [ledger.block(h).header for h in range(1, height + 1)]
    if (headers[-1].tree_size if headers else 0) != size:
        raise UsageError(f"no block ends at the checkpoint's tree size {size}")
    return headers


def _previous(ledger: Ledger, out: Path, origin: str, genesis: bytes, size: int
              ) -> tuple[int, int]:
    """(tree size, height) of an existing export of this ledger at ``out``; (0, 0) if none."""
    if not (out / MANIFEST).exists():
        if out.exists() and any(out.iterdir()):
            raise UsageError(f"{out} is not empty and holds no export; choose another folder")
        return 0, 0
    manifest = read_manifest(out)
    if manifest.origin != origin or manifest.genesis_hash != genesis:
        raise UsageError(f"{out} holds an export of another ledger ({manifest.origin})")
    old_size, old_height = manifest.tree_size, manifest.height
    if old_size > size:
        raise UsageError(f"{out} is ahead of this ledger (size {old_size} > {size})")
    old = Checkpoint.from_text(Note.from_bytes((out / CHECKPOINT).read_bytes()).text)
    if old.size != old_size or not hmac.compare_digest(old.root_hash,
                                                       ledger.tree.root(old_size)):
        raise FormatError(
            f"{out} holds a tree of size {old_size} that is not a prefix of this ledger"
        )
    return old_size, old_height


def _write_block_series(ledger: Ledger, writer: _Writer, headers: list[BlockHeader],
                        old_height: int) -> None:
    """Headers, certificates and checkpoints of the blocks that grew, by height - 1."""
    notes = dict(ledger.checkpoints())
    for tile in grown_tiles(old_height, len(headers)):
        span = range(tile.first, tile.first + tile.width)  # positions: height - 1
        writer.write(series_path(HEADERS, tile),
                     encode_bundle([headers[p].to_bytes() for p in span]))
        writer.write(series_path(CERTIFICATES, tile),
                     encode_bundle([ledger.certificate(p + 1) or b"" for p in span]))
        writer.write(series_path(CHECKPOINTS, tile),
                     encode_bundle([_checkpoint_at(notes, headers, p) for p in span]))


def _checkpoint_at(notes: dict[int, bytes], headers: list[BlockHeader], position: int) -> bytes:
    """The checkpoint of the block at ``position``, stored only at the first block of its
    size (blocks without records repeat their predecessor's size)."""
    size = headers[position].tree_size
    if position and headers[position - 1].tree_size == size:
        return b""
    return notes.get(size, b"")


class _Writer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.written = 0

    def write(self, relative: str, data: bytes) -> None:
        """Write a file atomically (a static server never serves half of one)."""
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self.written += 1

    def remove_superseded(self, old_size: int, size: int, old_height: int, height: int
                          ) -> None:
        """Delete partial files that a wider file of the same tile now replaces."""
        stale: list[str] = []
        for level in range(hash_levels(old_size)):
            shift = level * TILE_HEIGHT
            stale += _old_partial(old_size >> shift, size >> shift, level, Tile.path)
        stale += _old_partial(old_size, size, 0, Tile.entries_path)
        for series in BLOCK_SERIES:
            stale += _old_partial(old_height, height, 0, partial(series_path, series))
        for relative in stale:
            (self.out / relative).unlink(missing_ok=True)


def _old_partial(old: int, new: int, level: int, path: Callable[[Tile], str]) -> list[str]:
    width = old % (1 << TILE_HEIGHT)
    if not width or old == new:
        return []
    return [path(Tile(level, old >> TILE_HEIGHT, width))]

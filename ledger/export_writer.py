"""Write (or extend) a static export of a ledger store; the layout is in ``ledger/export.py``.

The export ends at the latest final checkpoint: its tree size is the export's size and the
last exported block is the last one within it. Re-running extends an existing export: only
tiles and bundles that grew are written, then the membership chain (when governance changed
the membership within the export), the checkpoint and the manifest, last, so a
reader never sees a checkpoint whose tiles are not there yet; superseded partial files are
removed after that. An existing export that is not a prefix of this ledger is refused.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
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
from ledger.governance import stored_transitions
from ledger.ledger_store import Ledger
from ledger.membership_chain import CHAIN_FILE, chain_up_to
from ledger.note import Note
from ledger.tiles import TILE_HEIGHT, TILE_WIDTH, Tile, encode_bundle, grown_tiles, hash_levels


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
    height, size, note = _latest_final(ledger)
    checkpoint = Checkpoint.from_text(Note.from_bytes(note).text)
    header = lru_cache(maxsize=TILE_WIDTH + 1)(lambda h: ledger.block(h).header)
    genesis = header(1).prev_hash if height else ledger.genesis_hash
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
    _write_block_series(ledger, writer, header, old_height, height)
    chain = chain_up_to(ledger, checkpoint.origin, stored_transitions(ledger), size)
    if chain is not None:  # before the checkpoint: it is never newer than its chain
        writer.write(CHAIN_FILE, chain)
    writer.write(CHECKPOINT, note)
    writer.write(MANIFEST, Manifest(checkpoint.origin, genesis, size, height).to_bytes())
    writer.remove_superseded(old_size, size, old_height, height)
    return ExportResult(checkpoint.origin, size, height, old_size, old_height, writer.written)


def _latest_final(ledger: Ledger) -> tuple[int, int, bytes]:
    """(height, tree size, note) of the last block of ``ledger.head`` whose size has a final
    checkpoint. Walking down from the head, not ``latest_checkpoint()``: on a running node
    a checkpoint may already be stored for a block committed after this reader's snapshot."""
    for height in range(ledger.head.height, 0, -1):
        size = ledger.block(height).header.tree_size
        note = ledger.checkpoint(size)
        if note is not None:
            return height, size, note
    raise UsageError("the ledger has no final checkpoint yet: nothing to export")


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


def _write_block_series(ledger: Ledger, writer: _Writer, header: Callable[[int], BlockHeader],
                        old_height: int, height: int) -> None:
    """Headers, certificates and checkpoints of the blocks that grew, by height - 1."""
    for tile in grown_tiles(old_height, height):
        heights = range(tile.first + 1, tile.first + tile.width + 1)
        writer.write(series_path(HEADERS, tile),
                     encode_bundle([header(h).to_bytes() for h in heights]))
        writer.write(series_path(CERTIFICATES, tile),
                     encode_bundle([ledger.certificate(h) or b"" for h in heights]))
        writer.write(series_path(CHECKPOINTS, tile),
                     encode_bundle([_checkpoint_at(ledger, header, h) for h in heights]))


def _checkpoint_at(ledger: Ledger, header: Callable[[int], BlockHeader], height: int) -> bytes:
    """The checkpoint of block ``height``'s tree size, stored only at the first block of
    that size (blocks without records repeat their predecessor's size)."""
    size = header(height).tree_size
    if height > 1 and header(height - 1).tree_size == size:
        return b""
    return ledger.checkpoint(size) or b""


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

"""Export of a real ledger to C2SP tlog-tiles, and reading it back with ``ExportReader``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ledger import merkle
from ledger.blocks import build_block
from ledger.checkpoint import Checkpoint
from ledger.errors import FormatError, StorageError, UsageError
from ledger.export import ExportReader, read_manifest
from ledger.export_writer import export_ledger
from ledger.genesis import TrustRoot, genesis_hash
from ledger.ledger_store import Ledger
from ledger.note import Note
from ledger.receipts import verify_receipt
from ledger.records import Envelope
from ledger.storage import Storage, StorageConfig
from ledger.tiles import decode_bundle, split_hashes
from node.demo import NETWORK, certificate_for, make_record
from tests.ledger.ledger_builder import build_ledger, extend_ledger, open_readonly

RECORDS, BLOCK = 700, 100


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ledger")
    build_ledger(folder, RECORDS, BLOCK)
    storage, ledger = open_readonly(folder)
    with storage:
        export_ledger(ledger, folder / "export")
    return folder


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_export_writes_the_tlog_tiles_layout(built: Path) -> None:
    files = set(_files(built / "export"))
    tiles = {"tile/0/000", "tile/0/001", "tile/0/002.p/188", "tile/1/000.p/2",
             "tile/entries/000", "tile/entries/001", "tile/entries/002.p/188"}
    series = {f"shadowledger/{s}/000.p/7" for s in ("headers", "certificates", "checkpoints")}
    assert files == tiles | series | {"checkpoint", "shadowledger/export.json"}
    manifest = read_manifest(built / "export")
    assert (manifest.tree_size, manifest.height) == (RECORDS, RECORDS // BLOCK)


def test_tiles_and_bundles_hold_the_ledger(built: Path) -> None:
    storage, ledger = open_readonly(built)
    with storage:
        envelopes = list(ledger.records(0, RECORDS))
        root = ledger.tree.root()
        checkpoint = ledger.latest_checkpoint()
    export = built / "export"
    bundle = decode_bundle((export / "tile/entries/002.p/188").read_bytes(), 188)
    assert [env for _, env in bundle] == envelopes[512:]
    leaves = merkle.leaf_hashes(envelopes)
    assert split_hashes((export / "tile/0/001").read_bytes(), 256) == leaves[256:512]
    level8 = split_hashes((export / "tile/1/000.p/2").read_bytes(), 2)
    assert level8 == [merkle.root(leaves[:256]), merkle.root(leaves[256:512])]
    assert checkpoint is not None and (export / "checkpoint").read_bytes() == checkpoint[1]
    note = Note.from_bytes(checkpoint[1])
    assert Checkpoint.from_text(note.text).root_hash == root


def test_reader_mimics_the_ledger_read_api(built: Path) -> None:
    reader = ExportReader(built / "export")
    storage, ledger = open_readonly(built)
    with storage:
        assert reader.head == ledger.head
        assert reader.tree.size == ledger.tree.size and reader.tree.root() == ledger.tree.root()
        for index in (0, 255, 256, 511, 699):
            assert reader.record(index) == ledger.record(index)
        for height in (1, 4, 7):
            assert reader.block(height) == ledger.block(height)
            assert reader.certificate(height) == ledger.certificate(height)
        assert [b.header for b in reader.blocks(6)] == [b.header for b in ledger.blocks(6)]
        for size in (100, 300, 700):
            assert reader.checkpoint(size) == ledger.checkpoint(size)
        assert reader.checkpoint(150) is None and reader.certificate(99) is None
        assert reader.latest_checkpoint() == ledger.latest_checkpoint()
        assert reader.receipt(300, 500) == ledger.receipt(300, 500)
        assert reader.receipt(699) == ledger.receipt(699)
        for size1, size2 in ((1, 700), (256, 513), (300, 600)):
            assert reader.consistency_proof(size1, size2) == ledger.consistency_proof(size1,
                                                                                     size2)
        rid = Envelope.from_bytes(ledger.record(333)).record_id
        assert reader.index_of(rid) == ledger.index_of(rid) == 333
        assert reader.index_of(bytes(32)) is None


def test_receipts_from_an_export_verify_offline(built: Path) -> None:
    reader = ExportReader(built / "export")
    trust = TrustRoot.load(built / "genesis.json")
    result = verify_receipt(reader.receipt(421), reader.record(421), trust)
    assert result.index == 421 and result.checkpoint.size == RECORDS
    assert result.record is not None


def test_reader_api_misuse_and_missing_files(built: Path, tmp_path: Path) -> None:
    reader = ExportReader(built / "export")
    with pytest.raises(UsageError, match="no record at index 700"):
        reader.record(700)
    with pytest.raises(UsageError, match="no block at height 8"):
        reader.block(8)
    copy = tmp_path / "export"
    shutil.copytree(built / "export", copy)
    (copy / "tile/entries/001").unlink()
    with pytest.raises(FormatError, match="tile/entries/001 is missing from the export"):
        ExportReader(copy).record(300)


def test_reexport_extends_to_exactly_a_fresh_export(tmp_path: Path) -> None:
    net = build_ledger(tmp_path, 300, 50)
    export = tmp_path / "export"
    storage, ledger = open_readonly(tmp_path)
    with storage:
        first = export_ledger(ledger, export)
    assert (export / "tile/entries/001.p/44").is_file()
    extend_ledger(net, tmp_path, 250, 50)
    storage, ledger = open_readonly(tmp_path)
    with storage:
        again = export_ledger(ledger, export)
        export_ledger(ledger, tmp_path / "fresh")
    assert (first.tree_size, again.previous_size, again.tree_size) == (300, 300, 550)
    assert again.files_written < 20  # only what grew: not the full tile 0 again
    assert _files(export) == _files(tmp_path / "fresh")  # stale partials are gone too
    storage, ledger = open_readonly(tmp_path)
    with storage:
        unchanged = export_ledger(ledger, export)
    assert unchanged.previous_size == unchanged.tree_size == 550


def test_export_refuses_another_ledger_or_a_foreign_folder(built: Path, tmp_path: Path
                                                           ) -> None:
    other = tmp_path / "other"
    build_ledger(other, 50, 25)
    storage, ledger = open_readonly(other)
    with storage:
        with pytest.raises(UsageError, match="export of another ledger"):
            export_ledger(ledger, built / "export")
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "notes.txt").write_text("mine")
        with pytest.raises(UsageError, match="not empty"):
            export_ledger(ledger, tmp_path / "busy")


def test_readonly_storage_never_writes(built: Path, tmp_path: Path) -> None:
    storage, _ = open_readonly(built)
    with storage, pytest.raises(StorageError, match="read-only"), storage.write():
        pass
    with pytest.raises(StorageError, match="no ledger store"):
        Storage(tmp_path / "none", StorageConfig(readonly=True))


def test_export_ends_at_the_last_block_with_a_final_checkpoint(tmp_path: Path) -> None:
    """Blocks committed after the latest final checkpoint wait for the next export."""
    net = build_ledger(tmp_path, 100, 50)
    with Storage(tmp_path / "node") as storage:
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        parent = ledger.block(2).header
        frontier = merkle.Frontier.from_source(ledger.tree, 100)
        block = build_block(NETWORK, parent, ledger.genesis_hash,
                            [make_record(net, 100).raw], frontier, parent.time_ms + 1,
                            bytes(32))
        ledger.commit_block(block, certificate_for(net, block))  # no checkpoint yet
    storage, ledger = open_readonly(tmp_path)
    with storage:
        result = export_ledger(ledger, tmp_path / "export")
    assert (result.tree_size, result.height) == (100, 2)
    assert ExportReader(tmp_path / "export").head.height == 2

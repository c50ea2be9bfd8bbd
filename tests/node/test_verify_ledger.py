"""`shadowledger export` and `audit verify-ledger` as users run them (real processes),
on a ledger built in-process, and every tamper case reported at its exact place."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.certificate import CommitCertificate
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.export import ExportReader
from ledger.export_writer import export_ledger
from ledger.tiles import Tile, decode_bundle, encode_bundle
from node.audit_run import pooled
from node.demo import DemoNetwork, certificate_for, make_network
from node.ledger_audit import verify_export
from tests.ledger.ledger_builder import build_ledger, open_readonly

EXE = [sys.executable, "-m", "node.cli"]
RECORDS, BLOCK = 600, 100


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoNetwork, Path]:
    folder = tmp_path_factory.mktemp("ledger")
    return build_ledger(folder, RECORDS, BLOCK), folder


@pytest.fixture(scope="module")
def export(ledger: tuple[DemoNetwork, Path]) -> Path:
    _, folder = ledger
    done = _run("export", "--data-dir", folder / "node", "--out", folder / "export")
    assert done.returncode == 0, done.stderr
    assert f"{RECORDS} records in {RECORDS // BLOCK} blocks" in done.stdout
    return folder / "export"


def _genesis(export: Path) -> Path:
    return export.parent / "genesis.json"


def _copy(export: Path, tmp_path: Path, name: str = "export") -> Path:
    """A copy of the export beside a copy of its genesis, to tamper with."""
    shutil.copytree(export, tmp_path / name)
    shutil.copy(_genesis(export), tmp_path / "genesis.json")
    return tmp_path / name


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _failed(copy: Path) -> str:
    done = _run("audit", "verify-ledger", copy, "--trust", _genesis(copy))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("FAILED: ") and done.stderr.count("\n") == 1
    return done.stderr


def test_verify_ledger_ok_with_summary(export: Path) -> None:
    done = _run("audit", "verify-ledger", export, "--trust", _genesis(export))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"OK: demo.shadow-ledger.example/v1: {RECORDS} records in 6 blocks")
    assert f"{RECORDS} record signatures, 6 commit certificates, 7 checkpoints" in out
    assert "records per kind: agreement 4, revocation 2, sharing_event 594" in out
    assert "agreements active at block 6" in out and "): 1\n" in out
    assert "record 5 tax-agency -> social-security: benefit-eligibility" in out
    assert "anomalies: 1\n    record 41: statistics-office revokes agreement 5" in out


def test_verify_ledger_json_and_jobs_agree(export: Path) -> None:
    results = []
    for jobs in ("1", "2"):
        done = _run("audit", "verify-ledger", export, "--trust", _genesis(export), "--json",
                    "--jobs", jobs)
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout))
    one, two = results
    for doc in results:
        doc.pop("seconds"), doc.pop("jobs"), doc.pop("records_per_second")
    assert one == two and one["ok"] and one["failure"] is None
    assert one["records_per_agency"] == {"health-insurance": 150, "social-security": 150,
                                         "statistics-office": 151, "tax-agency": 149}
    assert one["checked"] == {"records": RECORDS, "signatures": RECORDS, "blocks": 6,
                              "certificates": 6, "checkpoints": 7, "hash_tiles": 4,
                              "entry_bundles": 3}
    assert [a["index"] for a in one["agreements_active"]] == [5]


def test_progress_bar_on_stderr(export: Path) -> None:
    done = _run("audit", "verify-ledger", export, "--trust", _genesis(export), "--progress")
    assert done.returncode == 0
    assert f"100% {RECORDS}/{RECORDS} records" in done.stderr


def test_flipped_record_byte_names_record_block_file_and_offset(export: Path, tmp_path: Path
                                                                ) -> None:
    copy = _copy(export, tmp_path)
    bundle = copy / "tile/entries/001"
    offset = decode_bundle(bundle.read_bytes(), 256)[10][0]
    _flip(bundle, offset + 40)  # inside record 266's body
    err = _failed(copy)
    assert err.startswith(f"FAILED: record 266 (block 3, tile/entries/001 entry at byte"
                          f" {offset}): record signature by")


def test_flipped_hash_tile_byte_names_the_tile_and_its_record(export: Path, tmp_path: Path
                                                              ) -> None:
    copy = _copy(export, tmp_path)
    _flip(copy / "tile/0/001", 32 * 10 + 5)
    assert _failed(copy) == ("FAILED: tile/0/001 byte 320: hash of record 266 (block 3)"
                             " does not match the entries\n")
    copy2 = _copy(export, tmp_path, "second")
    _flip(copy2 / "tile/1/000.p/2", 40)
    assert "tile/1/000.p/2 byte 32: hash of records 256..511 (blocks 3..6)" in _failed(copy2)


def test_removed_entry_bundle(export: Path, tmp_path: Path) -> None:
    copy = _copy(export, tmp_path)
    (copy / "tile/entries/001").unlink()
    assert _failed(copy) == ("FAILED: tile/entries/001 is missing from the export (records"
                             " 256..511), from block 3 on\n")


def test_swapped_checkpoint(ledger: tuple[DemoNetwork, Path], export: Path, tmp_path: Path
                            ) -> None:
    _, folder = ledger
    copy = _copy(export, tmp_path)
    storage, store = open_readonly(folder)
    with storage:
        older = store.checkpoint(300)
    assert older is not None
    (copy / "checkpoint").write_bytes(older)
    assert _failed(copy) == ("FAILED: checkpoint is for tree size 300, the export holds"
                             f" {RECORDS} records\n")


def test_checkpoint_inconsistent_with_the_entries(ledger: tuple[DemoNetwork, Path],
                                                 export: Path, tmp_path: Path) -> None:
    """Even signed by every validator, a checkpoint must have the rebuilt tree's root."""
    net, _ = ledger
    copy = _copy(export, tmp_path)
    forged = Checkpoint(net.genesis.network, RECORDS, bytes(32))
    (copy / "checkpoint").write_bytes(sign_checkpoint(forged, net.validator_keys))
    err = _failed(copy)
    assert err.startswith(f"FAILED: checkpoint: root 0000000000000000.. at size {RECORDS}"
                          " differs from the root ")
    assert "of the tree rebuilt from the entries" in err


def test_certificate_with_too_few_signatures(ledger: tuple[DemoNetwork, Path], export: Path,
                                             tmp_path: Path) -> None:
    net, _ = ledger
    copy = _copy(export, tmp_path)
    reader = ExportReader(copy)
    path = copy / "shadowledger/certificates/000.p/6"
    items = [item for _, item in reader.items("shadowledger/certificates", Tile(0, 0, 6))]
    items[3] = certificate_for(net, reader.block(4), signers=2)
    assert len(CommitCertificate.from_bytes(items[3]).signatures) == 2
    path.write_bytes(encode_bundle(items))
    offset = decode_bundle(path.read_bytes(), 6)[3][0]
    assert _failed(copy) == (
        "FAILED: block 4 commit certificate (shadowledger/certificates/000.p/6 item at byte"
        f" {offset}): certificate has 2 of 3 required power\n")


def test_usage_and_missing_files(export: Path, tmp_path: Path) -> None:
    done = _run("audit", "verify-ledger", tmp_path / "nothing", "--trust", _genesis(export))
    assert done.returncode == 3 and "is not a ledger export" in done.stderr
    vkeys = export.parent / "validators.vkeys"
    done = _run("audit", "verify-ledger", export, "--trust", vkeys)
    assert done.returncode == 2 and "needs the genesis.json" in done.stderr
    done = _run("audit", "verify-ledger", export, "--trust", _genesis(export), "--jobs", "0")
    assert done.returncode == 2


def test_many_blocks_fill_whole_block_tiles(tmp_path: Path) -> None:
    """More than 256 blocks: full per-block bundles, checked in-process with 2 jobs."""
    build_ledger(tmp_path, 600, 2)
    storage, store = open_readonly(tmp_path)
    with storage:
        export_ledger(store, tmp_path / "export")
    assert (tmp_path / "export/shadowledger/headers/000").is_file()
    assert (tmp_path / "export/shadowledger/headers/001.p/44").is_file()
    genesis = (tmp_path / "genesis.json").read_bytes()
    report = verify_export(ExportReader(tmp_path / "export"), genesis, map_chunks=pooled(2))
    assert report.ok, report.failure
    assert (report.blocks, report.certificates, report.checkpoints) == (300, 300, 301)


def test_reordered_records_fail_their_block_root(export: Path, tmp_path: Path) -> None:
    """Two valid records swapped: every signature holds, the certified root does not."""
    copy = _copy(export, tmp_path)
    bundle = copy / "tile/entries/001"
    items = [env for _, env in decode_bundle(bundle.read_bytes(), 256)]
    items[44], items[45] = items[45], items[44]  # records 300 and 301, in block 4
    bundle.write_bytes(encode_bundle(items))
    offset = decode_bundle(bundle.read_bytes(), 256)[44][0]
    assert _failed(copy) == (
        "FAILED: block 4: block 4 tree root does not match its records; first differing"
        f" entry: record 300 (block 4, tile/entries/001 entry at byte {offset})\n")


def test_a_repeated_record_is_named_as_a_duplicate(export: Path, tmp_path: Path) -> None:
    """A validly signed record committed twice (record 301 replaced by record 300 in one
    bundle, then 256 by 255 across two) is caught by its id before its block's root."""
    copy = _copy(export, tmp_path)
    bundle = copy / "tile/entries/001"
    items = [env for _, env in decode_bundle(bundle.read_bytes(), 256)]
    items[45] = items[44]
    bundle.write_bytes(encode_bundle(items))
    offset = decode_bundle(bundle.read_bytes(), 256)[45][0]
    report = verify_export(ExportReader(copy), _genesis(copy).read_bytes())
    assert report.failure == (f"record 301 (block 4, tile/entries/001 entry at byte {offset}):"
                              " record is a duplicate of record 300")
    copy2 = _copy(export, tmp_path, "second")  # across bundles: 256 repeats 255
    last = decode_bundle((copy2 / "tile/entries/000").read_bytes(), 256)[255][1]
    bundle = copy2 / "tile/entries/001"
    items = [env for _, env in decode_bundle(bundle.read_bytes(), 256)]
    bundle.write_bytes(encode_bundle([last, *items[1:]]))
    report = verify_export(ExportReader(copy2), _genesis(copy2).read_bytes())
    assert report.failure.endswith("record is a duplicate of record 255")
    assert report.failure.startswith("record 256 (block 3, tile/entries/001 entry at byte 0)")


def test_tampered_block_header_breaks_its_certificate(export: Path, tmp_path: Path) -> None:
    copy = _copy(export, tmp_path)
    path = copy / "shadowledger/headers/000.p/6"
    offset = decode_bundle(path.read_bytes(), 6)[2][0]
    _flip(path, offset + 2 + 60)  # inside block 3's header (height / prev hash fields)
    report = verify_export(ExportReader(copy), _genesis(copy).read_bytes())
    assert report.failure.startswith("block 3 ")


def test_another_networks_genesis_is_refused(export: Path, tmp_path: Path) -> None:
    other = make_network(tmp_path / "other")
    report = verify_export(ExportReader(export), other.genesis_bytes)
    assert not report.ok and report.failure == "export was made from a ledger of another genesis"

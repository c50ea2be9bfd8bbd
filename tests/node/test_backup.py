"""Backups and restores of a store, as operators run them: the CLI in a real process."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import lmdb
import pytest

from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.storage import Storage, StorageConfig
from node.backup import DATA_FILE, MANIFEST_FILE, _sha256
from node.demo import run_demo

EXE = [sys.executable, "-m", "node.cli"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("store") / "demo"
    assert run_demo(folder, records=500, block_size=50) == 0
    return folder


@pytest.fixture(scope="module")
def backup(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("backups") / "node.tar"
    done = _run("node", "backup", "--data-dir", demo / "node", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "height 11, 536 records"  # 36 agreements, then 500 events in done.stdout
    return out


def _state(data_dir: Path, genesis: Path) -> tuple[int, int, bytes, bytes]:
    with Storage(data_dir, StorageConfig(readonly=True)) as storage:
        ledger = Ledger(storage, genesis_hash(genesis.read_bytes()))
        return ledger.head.height, ledger.tree.size, ledger.tree.root(), ledger.record(123)


def test_restore_gives_back_the_same_ledger(demo: Path, backup: Path, tmp_path: Path) -> None:
    genesis = demo / "genesis.json"
    done = _run("node", "restore", "--from", backup, "--data-dir", tmp_path / "data",
                "--genesis", genesis)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [DATA_FILE]
    assert _state(tmp_path / "data", genesis) == _state(demo / "node", genesis)
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_folder_backup_has_a_true_manifest(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert _run("node", "backup", "--data-dir", demo / "node", "--out", out).returncode == 0
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    height, size, root, _ = _state(demo / "node", demo / "genesis.json")
    assert (manifest["head_height"], manifest["tree_size"], manifest["tree_root"]) == (
        height, size, root.hex())
    assert manifest["genesis_hash"] == genesis_hash((demo / "genesis.json").read_bytes()).hex()
    assert manifest["data_sha256"] == _sha256(out / DATA_FILE)[0]
    verified = _run("node", "verify-backup", out, "--genesis", demo / "genesis.json")
    assert verified.returncode == 0 and verified.stdout.startswith("OK: "), verified.stderr


def _unpacked(backup: Path, into: Path) -> Path:
    into.mkdir()
    with tarfile.open(backup) as tar:
        for name in (MANIFEST_FILE, DATA_FILE):
            (into / name).write_bytes(tar.extractfile(name).read())  # type: ignore[union-attr]
    return into


def test_a_flipped_byte_is_refused_by_the_checksum(backup: Path, tmp_path: Path) -> None:
    copy = _unpacked(backup, tmp_path / "b")
    data = bytearray((copy / DATA_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / DATA_FILE).write_bytes(bytes(data))
    done = _run("node", "restore", "--from", copy, "--data-dir", tmp_path / "data")
    assert done.returncode == 1
    assert "FAILED:" in done.stderr and "does not match the manifest's checksum" in done.stderr
    assert not (tmp_path / "data").exists()


def _reseal(copy: Path) -> None:
    """Give a tampered copy a matching checksum, as a careless or hostile editor would."""
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["data_sha256"], manifest["data_bytes"] = _sha256(copy / DATA_FILE)
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))


def _tamper(copy: Path, db: bytes, key: bytes | None, edit: object) -> None:
    env = lmdb.open(str(copy), max_dbs=16, lock=False)
    with env.begin(write=True) as txn:
        handle = env.open_db(db, txn=txn, create=False)
        if key is None:  # the middle entry
            cursor = txn.cursor(db=handle)
            keys = list(cursor.iternext(values=False))
            key = keys[len(keys) // 2]
        value = bytearray(txn.get(key, db=handle))
        edit(value)  # type: ignore[operator]
        txn.put(key, bytes(value), db=handle)
    env.close()
    (copy / "lock.mdb").unlink(missing_ok=True)
    _reseal(copy)


def _flip_last(value: bytearray) -> None:
    value[-1] ^= 0x01


@pytest.mark.parametrize(("db", "key", "code", "says"), [
    (b"records", struct.pack(">Q", 77), 3, "record 77 is not the tree's leaf 77"),
    (b"blocks", struct.pack(">Q", 4), 1, "block 4 tree root does not match its records"),
    (b"record_ids", None, 3, "is not indexed by its record id"),
    (b"tree", struct.pack(">BQ", 0, 3), 3, "fails its checksum"),
])
def test_a_resealed_tampered_store_fails_the_ledger_checks(
    backup: Path, tmp_path: Path, db: bytes, key: bytes | None, code: int, says: str
) -> None:
    copy = _unpacked(backup, tmp_path / "b")
    _tamper(copy, db, key, _flip_last)
    done = _run("node", "restore", "--from", copy, "--data-dir", tmp_path / "data")
    assert done.returncode == code, done.stderr
    assert says in done.stderr
    assert not (tmp_path / "data").exists()


def test_a_backup_of_another_network_is_refused(backup: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert run_demo(other, records=10, block_size=10) == 0
    done = _run("node", "restore", "--from", backup, "--data-dir", tmp_path / "data",
                "--genesis", other / "genesis.json")
    assert done.returncode == 1 and "another network's genesis" in done.stderr


def test_a_manifest_naming_another_head_is_refused(backup: Path, tmp_path: Path) -> None:
    copy = _unpacked(backup, tmp_path / "b")
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["tree_size"] = 535
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    done = _run("node", "verify-backup", copy)
    assert done.returncode == 1 and "the manifest names height 11, size 535" in done.stderr


def test_an_archive_with_other_members_is_refused(backup: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    (tmp_path / "x").write_text("x")
    with tarfile.open(evil, "w") as tar:
        tar.add(tmp_path / "x", arcname="../escape")
    done = _run("node", "restore", "--from", evil, "--data-dir", tmp_path / "data")
    assert done.returncode == 1 and "unexpected archive member '../escape'" in done.stderr
    assert not (tmp_path / "escape").exists()


def test_a_non_empty_data_dir_needs_force(demo: Path, backup: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo / "node", data)
    (data / DATA_FILE).write_bytes(b"old")
    done = _run("node", "restore", "--from", backup, "--data-dir", data)
    assert done.returncode == 2 and "pass --force" in done.stderr
    assert (data / DATA_FILE).read_bytes() == b"old"
    done = _run("node", "restore", "--from", backup, "--data-dir", data, "--force")
    assert done.returncode == 0, done.stderr
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("data.before-restore-")]
    assert len(aside) == 1 and (aside[0] / DATA_FILE).read_bytes() == b"old"


def test_a_store_in_use_is_not_replaced(demo: Path, backup: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo / "node", data)
    with Storage(data):  # this process holds it open, as a running node would
        done = _run("node", "restore", "--from", backup, "--data-dir", data, "--force")
    assert done.returncode == 2 and "in use by a running process" in done.stderr


def test_backup_refuses_an_existing_output_and_a_missing_store(
    demo: Path, tmp_path: Path
) -> None:
    (tmp_path / "b").mkdir()
    done = _run("node", "backup", "--data-dir", demo / "node", "--out", tmp_path / "b")
    assert done.returncode == 2 and "exists" in done.stderr
    done = _run("node", "backup", "--data-dir", tmp_path / "none", "--out", tmp_path / "c")
    assert done.returncode == 3 and "data.mdb is missing" in done.stderr

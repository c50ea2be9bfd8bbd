"""The `shadowledger` command as users run it: real processes, files only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "node.cli"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "net"
    done = _run("demo", "--data", folder, "--records", "600", "--block-size", "100")
    assert done.returncode == 0, done.stderr
    assert "receipt verified" in done.stdout and "consistency verified" in done.stdout
    assert "committed 36 countersigned agreements and 600 sharing events" in done.stdout
    return folder


def test_demo_builds_a_real_ledger(demo: Path) -> None:
    assert (demo / "node" / "data.mdb").stat().st_size > 0
    assert (demo / "receipt.tlog-proof").read_bytes().startswith(b"c2sp.org/tlog-proof@v1\n")
    skeys = sorted((demo / "keys").glob("*.skey"))
    assert len(skeys) == 8 and all(not k.stat().st_mode & 0o077 for k in skeys)


@pytest.mark.parametrize("trust", ["genesis.json", "validators.vkeys"])
def test_verify_receipt_succeeds(demo: Path, trust: str) -> None:
    done = _run("audit", "verify-receipt", demo / "receipt.tlog-proof",
                "--record", demo / "record.bin", "--trust", demo / trust)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ") and "size 636" in done.stdout  # 36 agreements


def test_verify_consistency_succeeds(demo: Path) -> None:
    done = _run("audit", "verify-consistency", demo / "old.checkpoint", demo / "new.checkpoint",
                "--proof", demo / "consistency.proof", "--trust", demo / "genesis.json")
    assert done.returncode == 0, done.stderr
    assert "size 636 extends its state at size 36" in done.stdout


def _flip_byte(src: Path, dst: Path, at: int) -> Path:
    data = bytearray(src.read_bytes())
    data[at] ^= 0x20
    dst.write_bytes(bytes(data))
    return dst


def test_tampered_record_fails_with_one_line(demo: Path, tmp_path: Path) -> None:
    record = _flip_byte(demo / "record.bin", tmp_path / "record.bin", 20)
    done = _run("audit", "verify-receipt", demo / "receipt.tlog-proof",
                "--record", record, "--trust", demo / "genesis.json")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("FAILED: ")


def test_checkpoint_signed_by_too_few_validators_fails(demo: Path, tmp_path: Path) -> None:
    receipt = (demo / "receipt.tlog-proof").read_bytes()
    head, _, sigs = receipt.rpartition(b"\n\n")
    kept = b"\n".join(sigs.split(b"\n")[:2]) + b"\n"  # 2 of 4 signatures: below 3
    (tmp_path / "r").write_bytes(head + b"\n\n" + kept)
    done = _run("audit", "verify-receipt", tmp_path / "r", "--record", demo / "record.bin",
                "--trust", demo / "genesis.json")
    assert done.returncode == 1
    assert "2 of 4 signatures, need 3" in done.stderr


def test_wrong_trust_root_fails(demo: Path, tmp_path: Path) -> None:
    keygen = _run("keygen", "someone-else", "--out", tmp_path)
    assert keygen.returncode == 0
    done = _run("audit", "verify-receipt", demo / "receipt.tlog-proof",
                "--record", demo / "record.bin", "--trust", tmp_path / "someone-else.vkey")
    assert done.returncode == 1 and "0 of 1 signatures" in done.stderr


def test_swapped_checkpoints_fail_consistency(demo: Path) -> None:
    done = _run("audit", "verify-consistency", demo / "new.checkpoint", demo / "old.checkpoint",
                "--proof", demo / "consistency.proof", "--trust", demo / "genesis.json")
    assert done.returncode == 1 and done.stderr.startswith("FAILED: ")


def test_missing_file_is_an_io_error(demo: Path) -> None:
    done = _run("audit", "verify-receipt", demo / "nope", "--record", demo / "record.bin",
                "--trust", demo / "genesis.json")
    assert done.returncode == 3 and "No such file" in done.stderr


def test_usage_errors_exit_2() -> None:
    assert _run("audit", "verify-receipt").returncode == 2

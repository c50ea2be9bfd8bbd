"""``audit verify-receipt --policy / --witness-quorum`` and ``verify-split-view`` as users run
them: real processes, files only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import cosign
from ledger.note import Note
from ledger.splitview import EvidenceFile
from ledger.tlogproof import TlogProof
from ledger.witness import Evidence
from tests.ledger.test_witness import FORK, NOW, ORIGIN, VALIDATORS, W, note

EXE = [sys.executable, "-m", "node.cli"]
RECORDS = [f"record-{i}".encode() for i in range(9)]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    tree = merkle.MemoryTree(merkle.leaf_hashes(RECORDS))
    checkpoint = Checkpoint(ORIGIN, 9, tree.root())
    signed = Note.from_bytes(sign_checkpoint(checkpoint, VALIDATORS[:3]))
    cosigned = signed.with_signatures([cosign(checkpoint, W[0], NOW)]).to_bytes()
    proof = merkle.prove_inclusion(tree, 4, 9)
    (tmp_path / "receipt").write_bytes(TlogProof(4, tuple(proof), cosigned).to_bytes())
    (tmp_path / "record").write_bytes(RECORDS[4])
    (tmp_path / "validators").write_text("".join(k.verifier.to_vkey() + "\n"
                                                 for k in VALIDATORS))
    return tmp_path


def _policy(folder: Path, quorum: str) -> Path:
    path = folder / "policy"
    path.write_text(f"witness w0 {W[0].verifier.to_vkey()}\nwitness w1 {W[1].verifier.to_vkey()}"
                    f"\ngroup both all w0 w1\nquorum {quorum}\n")
    return path


def _verify(files: Path, *extra: str | Path) -> subprocess.CompletedProcess[str]:
    return _run("audit", "verify-receipt", files / "receipt", "--record", files / "record",
                "--trust", files / "validators", *extra)


def test_receipt_with_the_policy_quorum_passes(files: Path) -> None:
    done = _verify(files, "--policy", _policy(files, "w0"))
    assert done.returncode == 0, done.stderr
    assert "cosigned by witnesses w0" in done.stdout


def test_receipt_short_of_the_policy_quorum_fails(files: Path) -> None:
    done = _verify(files, "--policy", _policy(files, "both"))
    assert done.returncode == 1
    assert done.stderr.startswith("FAILED: checkpoint lacks witness cosignatures: need 2 of 2")


def test_witness_quorum_needs_a_genesis(files: Path) -> None:
    done = _verify(files, "--witness-quorum", "1")
    assert done.returncode == 2 and "--policy" in done.stderr


def test_bad_policy_file_is_named(files: Path) -> None:
    (files / "bad").write_text("quorum nobody\n")
    done = _verify(files, "--policy", files / "bad")
    assert done.returncode == 1 and "policy line 1" in done.stderr


def test_verify_split_view_exit_codes(files: Path) -> None:
    conclusive = EvidenceFile(Evidence("same-size", note(30), note(30, FORK)), ORIGIN, NOW, "")
    (files / "split.json").write_bytes(conclusive.to_bytes())
    done = _run("audit", "verify-split-view", files / "split.json", "--trust",
                files / "validators")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("CONFIRMED: split view of") and "size 30" in done.stdout
    inconclusive = EvidenceFile(Evidence("bad-consistency-proof", note(12), note(20, FORK)),
                                ORIGIN, NOW, "")
    (files / "weak.json").write_bytes(inconclusive.to_bytes())
    done = _run("audit", "verify-split-view", files / "weak.json", "--trust",
                files / "validators")
    assert done.returncode == 1 and "not conclusive" in done.stderr

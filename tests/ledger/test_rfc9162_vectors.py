"""Every transparency-dev/merkle conformance vector must give its ``wantErr``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ledger.errors import ProofError
from ledger.merkle import verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "rfc9162"


def _files(kind: str) -> list[Path]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return files


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def test_vectors_are_present() -> None:
    # Both folders hold 196 files between them; a missing checkout must not pass silently.
    assert len(_files("inclusion")) + len(_files("consistency")) == 196


@pytest.mark.parametrize("path", _files("inclusion"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize(
    "path", _files("consistency"), ids=lambda p: str(p.relative_to(VECTORS))
)
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v["proof"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)

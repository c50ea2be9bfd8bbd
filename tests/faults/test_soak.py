"""The long soak as a pytest test (``-m slow``); ``make soak`` runs the same campaign as a
script and prints its JSON summary. SOAK_MINUTES (default 30) sets its length."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.faults.soak import soak


@pytest.mark.slow
@pytest.mark.timeout(0)
def test_soak_with_periodic_kills_and_partitions(tmp_path: Path) -> None:
    minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    summary = soak(tmp_path / "net", minutes, int(os.environ.get("FAULT_SEED", "1")), 25.0)
    print(json.dumps(summary))
    assert summary["ok"], summary
    assert summary["kills"] and summary["partitions"]

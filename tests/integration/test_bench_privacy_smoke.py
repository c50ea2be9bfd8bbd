"""The privacy benchmark in quick mode runs and its figures are consistent (no timing
assertions: the figures depend on the machine)."""

from __future__ import annotations

import json

import pytest

from bench import bench_privacy


def test_privacy_benchmark_quick_mode(capsys: pytest.CaptureFixture[str]) -> None:
    bench_privacy.run(quick=True)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    commit, lookup = rows
    assert commit["case"] == "commit" and commit["records"] == 5000
    assert commit["with_index_records_per_s"] > 0 and commit["without_index_records_per_s"] > 0
    assert lookup["case"] == "subject_lookup" and lookup["matches"] == 5

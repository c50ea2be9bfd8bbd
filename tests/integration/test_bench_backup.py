"""The backup benchmark in quick mode: it runs end to end and its rows are sane.
No timing assertions: the figures depend on the machine."""

from __future__ import annotations

import json

import pytest

from bench import bench_backup


def test_backup_benchmark_quick_mode(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_backup.run(quick=True)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert printed == rows
    by = {r["bench"]: r for r in rows}
    create = by["backup.create"]
    assert create["records"] == 5000 and create["value"] > 0 and create["plain_copy_s"] > 0
    assert 0 < create["size_ratio"] <= 1.0  # compacted: never larger than the store
    assert by["backup.verify"]["value"] > 0 and by["backup.restore"]["value"] > 0
    live = by["backup.live_commit"]
    assert live["blocks_during"] > 0 and live["blocks_alone"] > 0 and live["value"] > 0

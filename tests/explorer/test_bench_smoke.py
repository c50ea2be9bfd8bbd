"""The explorer benchmark in quick mode runs end to end and prints its rows as JSON lines.
No timing assertions: the figures depend on the machine."""

from __future__ import annotations

import json

import pytest

from bench import bench_explorer


def test_explorer_benchmark_quick_mode(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_explorer.run(quick=True)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert printed == rows
    assert [r["bench"] for r in rows] == [
        "explorer.stats_scan", "explorer.http.blocks_page_cold", "explorer.http.record",
        "explorer.http.blocks_page", "explorer.http.receipt"]
    assert rows[0]["records"] == 2000 and rows[0]["unit"] == "records/s"
    assert all(r["value"] > 0 for r in rows)
    assert [r["requests"] for r in rows[2:]] == [50, 50, 50]

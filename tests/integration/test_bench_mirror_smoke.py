"""The mirror benchmark in a small size: it runs end to end against a real network and its
figures are consistent. No timing assertions: the figures depend on the machine."""

from __future__ import annotations

import json

import pytest

from bench import bench_mirror


def test_mirror_benchmark_small(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_mirror.run(rows=3000)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert printed == rows
    by_name = {r["bench"]: r for r in rows}
    mirror = by_name["mirror.rows_per_s"]
    assert (mirror["rows"], mirror["records"]) == (3000, 6) and mirror["value"] > 0
    baseline = by_name["mirror.per_row_baseline"]
    assert baseline["records"] == baseline["rows"] == 3000
    incremental = by_name["mirror.incremental"]
    assert (incremental["rows_read"], incremental["rows_changed"]) == (3000, 30)
    reconcile = by_name["reconcile.rows_per_s"]
    assert reconcile["rows"] == 3000 and reconcile["records_verified"] == 7
    assert reconcile["findings"] == {"changed": 0, "deleted": 0, "unanchored": 0,
                                     "state-mismatch": 0}
    assert by_name["reconcile.hash_only"]["value"] > 0

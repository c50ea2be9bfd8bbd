"""The witness benchmark in quick mode runs end to end and reports all three ways."""

from __future__ import annotations

from bench import bench_witness


def test_witness_benchmark_quick_mode() -> None:
    rows = bench_witness.run(quick=True)
    assert [r["impl"] for r in rows] == ["decide", "store", "http"]
    assert all(r["requests"] == 50 and r["per_s"] > 0 for r in rows)
    assert rows[0]["vs_decide"] == 1.0

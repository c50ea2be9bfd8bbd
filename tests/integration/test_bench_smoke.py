"""The cluster benchmark in its smallest mode: it runs end to end, cleans up after itself
and produces sane numbers. No timing assertions: the figures depend on the machine."""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any

import pytest

from bench import bench_cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _rows(rows: list[dict[str, Any]], bench: str, impl: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["bench"] == bench and r["impl"] == impl]


def test_cluster_benchmark_quick_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with_etcd = shutil.which("etcd") is not None  # `make bench` installs it; tests do not
    rows = bench_cluster.run(quick=True, etcd=with_etcd)

    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert printed == rows  # one JSON object per line, exactly the returned rows

    (peak,) = _rows(rows, "cluster.throughput", "shadowledger")
    assert peak["unit"] == "records/s" and peak["value"] > 0
    assert peak["acked"] > 0 and peak["errors"] == [] and peak["refused"] == {}
    assert peak["records_per_block"] is not None and peak["records_per_block"] >= 1
    for metric in ("p50", "p99"):
        (row,) = _rows(rows, f"cluster.latency_{metric}", "shadowledger")
        assert math.isfinite(row["value"]) and row["value"] > 0 and row["unit"] == "ms"
        assert row["errors"] == [] and row["acked"] > 0
        assert row["latency_p50_ms"] <= row["latency_p99_ms"] <= row["latency_max_ms"]
        assert 0 < row["achieved_rate"] <= 2 * row["offered_rate"]

    rss = _rows(rows, "cluster.rss", "shadowledger")
    assert sorted(r["node"] for r in rss) == sorted(bench_cluster.AGENCIES)
    for r in rss:
        assert r["samples"] >= 2 and 10 < r["first_mib"] <= r["max_mib"] < 4096
        assert 0.2 < r["ratio_last_first"] < 5
    pids = [r["pid"] for r in rss]

    if with_etcd:
        etcd_peak = _rows(rows, "cluster.throughput", "etcd")
        assert etcd_peak and all(r["value"] > 0 and r["errors"] == [] for r in etcd_peak)
        (ratio,) = _rows(rows, "cluster.ratio", "shadowledger/etcd")
        assert ratio["value"] > 0
        expected = ratio["shadowledger"] / ratio["etcd"]  # the row prints 3 decimals
        assert ratio["value"] == pytest.approx(expected, rel=0.01, abs=5e-4)
        assert _rows(rows, "cluster.latency_p99", "etcd")
        pids += [r["pid"] for r in _rows(rows, "cluster.rss", "etcd")]

    assert pids and not any(_alive(pid) for pid in pids)  # every process was stopped


def test_policy_benchmark_runs_both_kinds_side_by_side(
        capsys: pytest.CaptureFixture[str]) -> None:
    from bench import bench_policy

    rows = bench_policy.run(quick=True, duration=3.0, rounds=1)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert printed == rows
    costs = {r["records"]: r for r in rows if r["bench"] == "policy.check_us"}
    assert set(costs) == {"anchor", "sharing_event"}
    assert all(0 < r["value"] < 1000 and r["unit"] == "us/record" for r in costs.values())
    phases = {r["records"]: r for r in rows if r["bench"] == "policy.throughput"}
    assert set(phases) == {"anchor", "sharing_event"}
    for row in phases.values():  # every event was covered: nothing refused, all committed
        assert row["value"] > 0 and row["acked"] > 0
        assert row["refused"] == {} and row["errors"] == []
    (ratio,) = [r for r in rows if r["bench"] == "policy.ratio"]
    assert ratio["value"] == pytest.approx(ratio["sharing_mean"] / ratio["anchor_mean"],
                                           rel=0.02)

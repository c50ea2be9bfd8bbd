"""The audit benchmark in quick mode: it runs end to end, its ledger verifies and it
reports every figure. No timing assertions: the figures depend on the machine."""

from __future__ import annotations

import json
import statistics

import pytest

from bench import bench_audit


def test_audit_benchmark_quick_mode(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_audit.run(quick=True)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert printed == rows
    assert {r["bench"] for r in rows} == {"audit.build", "audit.ed25519_impls",
                                          "audit.ed25519_raw", "audit.verify_ledger"}
    impls = next(r for r in rows if r["bench"] == "audit.ed25519_impls")
    assert set(impls["rates"]) == set(bench_audit.RAW_IMPLS)  # every verify was timed
    medians = {impl: statistics.median(rates) for impl, rates in impls["rates"].items()}
    fastest = max(medians, key=lambda impl: medians[impl])
    assert fastest in impls["raw_baseline"]  # (medians of rounded rates: 1% of slack)
    assert all(medians[i] >= 0.89 * medians[fastest] for i in impls["raw_baseline"])
    audits = [r for r in rows if r["bench"] == "audit.verify_ledger"]
    assert [r["jobs"] for r in audits] == [1, 2]
    for row in audits:
        assert row["records"] == 5_036 and row["value"] > 0 and row["ratio_to_raw_one_core"] > 0
    # raw verifies ran during the --jobs 1 audit, every close implementation; the ratio is
    # against the fastest of them
    one = audits[0]
    assert one["method"] == "raw interleaved"
    assert set(one["raw_by_impl"]) == set(impls["raw_baseline"])
    assert one["raw"] == max(one["raw_by_impl"].values())

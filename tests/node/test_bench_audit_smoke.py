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
    assert impls["raw_baseline"] == max(medians, key=lambda impl: medians[impl])
    raw = next(r for r in rows if r["bench"] == "audit.ed25519_raw")
    assert raw["impl"] == impls["raw_baseline"]  # the ratio is against the fastest
    audits = [r for r in rows if r["bench"] == "audit.verify_ledger"]
    assert [r["jobs"] for r in audits] == [1, 2]
    for row in audits:
        assert row["records"] == 5_036 and row["value"] > 0 and row["ratio_to_raw_one_core"] > 0
    # raw verifies ran during the --jobs 1 audit: 500 after each of its 11 blocks
    assert audits[0]["method"] == "raw interleaved" and audits[0]["raw_verifies"] == 11 * 500

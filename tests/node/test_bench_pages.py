"""Smoke run of ``bench/bench_pages.py``: rows as the ledger grows, pages counted."""

from __future__ import annotations

import json

import pytest

from bench import bench_pages


@pytest.mark.skipif(not bench_pages.SMAPS.exists(), reason="reads Linux /proc/self/smaps")
def test_pages_bench_reports_mapped_pages_per_step(capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    bench_pages.run(quick=True)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["bench"] for r in rows] == ["pages.per_block"] * len(rows) and len(rows) >= 3
    sizes = [r["ledger_records"] for r in rows]
    assert sizes == sorted(sizes) and sizes[-1] == 5 * 200
    for row in rows:
        pages = row["mapped_pages"]
        assert set(pages) == {"id_lookups", "gossip_admission", "validate", "commit"}
        assert all(n > 0 for n in pages.values())  # every step read the map
        assert row["id_index_leaf_pages"] > 0

"""A short seeded fault campaign under load: kills, partitions, slow links, clock skew.

The same campaign, longer, is the soak (``make soak``, tests/faults/soak.py). A failing
seed reproduces with ``FAULT_SEED=<seed> pytest tests/faults/test_campaign.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.faults.checker import AckChecker
from tests.faults.harness import OBSERVER, VALIDATORS, Load, fault_cluster, seeded
from tests.faults.scenario import Campaign

SEED = int(os.environ.get("FAULT_SEED", "20261123"))
SKEWED = {"health-insurance": 3_600_000, "statistics-office": -3_600_000}
"""Wall-clock offsets (ms): one validator an hour ahead, one an hour behind."""


def test_seeded_fault_campaign_loses_nothing(tmp_path: Path) -> None:
    with fault_cluster(tmp_path / "net", start=False) as cluster:
        for agency, offset in SKEWED.items():
            cluster.set_config(agency, "node", "clock_offset_ms", str(offset))
        cluster.start_all()
        checker = AckChecker()
        loads = [Load(cluster, agency, checker, rate=25).start() for agency in VALIDATORS]
        campaign = Campaign(cluster, checker, seeded(SEED), hold_s=(3.0, 4.0), recover_s=3.0)
        campaign.start_sampling()
        try:
            for fault in ("kill", "isolate", "split", "slow"):  # each at least once
                campaign.step(fault)
            checker.end_phase(cluster.height(VALIDATORS))
        finally:
            campaign.stop_sampling()
            for load in loads:
                load.stop()
        assert cluster.mesh is not None
        cluster.mesh.heal()
        report = checker.verify(cluster, [*VALIDATORS, OBSERVER])
        print(json.dumps({"seed": SEED, **report.as_dict(), **campaign.stats.as_dict()}))
        assert not checker.errors, checker.errors
        assert report.acked > 100 and campaign.stats.kills >= 1
        assert campaign.stats.partitions >= 2 and campaign.stats.slow_links >= 1

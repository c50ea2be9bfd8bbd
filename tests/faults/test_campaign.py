"""A short seeded fault campaign under load: kills, partitions, slow links, clock skew.

The same campaign, longer, is the soak (``make soak``, tests/faults/soak.py). A failing
seed reproduces with ``FAULT_SEED=<seed> pytest tests/faults/test_campaign.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.faults.harness import OBSERVER, VALIDATORS, fault_cluster
from tests.faults.scenario import loaded_campaign

SEED = int(os.environ.get("FAULT_SEED", "20261123"))


def test_seeded_fault_campaign_loses_nothing(tmp_path: Path) -> None:
    with fault_cluster(tmp_path / "net", start=False) as cluster:
        with loaded_campaign(cluster, SEED, 25, hold_s=(3.0, 4.0), recover_s=3.0) as campaign:
            for fault in ("kill", "isolate", "split", "slow"):  # each at least once
                campaign.step(fault)
        checker = campaign.checker
        report = checker.verify(cluster, [*VALIDATORS, OBSERVER])
        print(json.dumps({"seed": SEED, **report.as_dict(), **campaign.stats.as_dict()}))
        assert not checker.errors, checker.errors
        assert report.acked > 100 and campaign.stats.kills >= 1
        assert campaign.stats.partitions >= 2 and campaign.stats.slow_links >= 1

"""One Byzantine validator (tests/faults/byzantine.py) among four, under load.

It withholds votes, equivocates (votes and proposals), sends invalid signatures and
proposes invalid blocks. The three honest validators are 2f+1: they must keep
committing, commit nothing invalid, lose no acknowledged record, and keep evidence.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.faults.checker import AckChecker
from tests.faults.harness import OBSERVER, Load, fault_cluster, seeded
from tests.faults.scenario import Campaign

LIAR = "statistics-office"
HONEST = ["tax-agency", "social-security", "health-insurance"]


def test_byzantine_validator_cannot_stop_or_corrupt_the_ledger(tmp_path: Path) -> None:
    with fault_cluster(tmp_path / "net", start=False) as cluster:
        cluster.commands[LIAR] = ["-m", "tests.faults.byzantine", "--seed", "7"]
        cluster.start_all()
        checker = AckChecker()
        loads = [Load(cluster, agency, checker, rate=40).start() for agency in HONEST]
        sampler = Campaign(cluster, checker, seeded(7)).start_sampling()
        try:
            for second in range(0, 16, 4):
                checker.begin_phase(f"byzantine {second}s", True, cluster.height(HONEST))
                time.sleep(4)
            checker.end_phase(cluster.height(HONEST))
        finally:
            sampler.stop_sampling()
            for load in loads:
                load.stop()
        report = checker.verify(cluster, [*HONEST, OBSERVER], max_stall_s=10)
        print(json.dumps(report.as_dict()))
        assert not checker.errors, checker.errors
        assert report.acked > 200
        liar_log = cluster.log_of(LIAR)
        for behaviour in ("withhold vote", "equivocate vote", "invalid signature",
                          "invalid block", "equivocate proposal"):
            assert f'"behaviour": "{behaviour}"' in liar_log, behaviour
        honest_logs = "".join(cluster.log_of(a) for a in HONEST)
        assert "equivocation detected" in honest_logs  # kept as evidence
        assert "signature does not verify" in honest_logs  # refused at the boundary

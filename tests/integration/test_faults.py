"""Crashes, restarts and late joiners: no acknowledged record is lost, all nodes agree."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.cluster import running_cluster, submit_records

VALIDATORS = ["tax-agency", "social-security", "health-insurance", "statistics-office"]


def test_killed_validator_restarts_and_catches_up(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "net") as cluster:
        acks = submit_records(cluster, "tax-agency", 0, 20)
        cluster.kill("statistics-office")  # kill -9 while the others keep going
        acks += submit_records(cluster, "social-security", 0, 30)
        acks += submit_records(cluster, "health-insurance", 0, 30)
        cluster.start("statistics-office")
        cluster.wait_ready(["statistics-office"])
        acks += submit_records(cluster, "statistics-office", 0, 10)  # and it takes part again
        size = max(a.checkpoint.size for a in acks)
        cluster.wait_same_root([*VALIDATORS, "audit-office"], size)
        # No acknowledged record is missing, none appears twice.
        with cluster.client("tax-agency", via="statistics-office") as client:
            indexes = {client.get_record(record_id=a.record_id).index for a in acks}
        assert indexes == {a.index for a in acks} and len(indexes) == len(acks) == 90


def test_a_validator_that_joins_late_catches_up_by_state_sync(tmp_path: Path) -> None:
    first = ["tax-agency", "social-security", "health-insurance", "audit-office"]
    with running_cluster(tmp_path / "net", start=first) as cluster:
        acks = submit_records(cluster, "tax-agency", 0, 40)
        acks += submit_records(cluster, "health-insurance", 0, 40)
        late = cluster.node("statistics-office").config_path
        late.write_text(late.read_text().replace("[consensus]\n",
                                                  "[consensus]\nstate_sync_gap = 2\n"))
        cluster.start("statistics-office")
        cluster.wait_ready(["statistics-office"])
        size = max(a.checkpoint.size for a in acks)
        cluster.wait_same_root(VALIDATORS, size)
        log = late.parent / "node.log"
        deadline = time.monotonic() + 20  # logged once consensus resumed at the new head
        while '"event": "caught up"' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert '"state_sync": true' in log.read_text()


def test_clean_restart_of_every_node_keeps_every_record(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "net") as cluster:
        acks = submit_records(cluster, "social-security", 0, 25)
        size = max(a.checkpoint.size for a in acks)
        root = cluster.wait_same_root(VALIDATORS, size)
        for agency in VALIDATORS:
            assert cluster.stop(agency) == 0  # SIGTERM: clean shutdown, exit code 0
        for agency in VALIDATORS:
            cluster.start(agency)
        cluster.wait_ready(VALIDATORS)
        assert cluster.wait_same_root(VALIDATORS, size) == root
        more = submit_records(cluster, "tax-agency", 0, 5)
        assert min(a.index for a in more) == size  # nothing lost, nothing duplicated

"""A full disk, simulated by a 1 MiB LMDB map on one validator.

The node must refuse writes cleanly (RESOURCE_EXHAUSTED naming the fix, an error in its
log, health NOT_SERVING), keep its store intact (the failed transaction is aborted), let
the other three validators go on, and catch up after a restart with a larger map.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.client import Ack, ApiError
from tests.faults.checker import AckChecker
from tests.faults.harness import OBSERVER, VALIDATORS, fault_cluster, wait_for

FULL = "statistics-office"


def test_full_store_refuses_writes_and_recovers_with_a_larger_map(tmp_path: Path) -> None:
    with fault_cluster(tmp_path / "net", start=False) as cluster:
        cluster.set_config(FULL, "storage", "map_size", str(1 << 20))
        cluster.start_all()
        checker = AckChecker()
        i = 0
        with cluster.client("tax-agency") as client:
            while "consensus halted" not in cluster.log_of(FULL):
                assert i < 50_000, "a 1 MiB map never filled up"
                for result in client.submit_many(cluster.record("tax-agency", i + j)
                                                 for j in range(500)):
                    assert isinstance(result, Ack), result  # 3 of 4 validators suffice
                    checker.acked(result)
                i += 500
        print(f"1 MiB map full after {i} records")
        assert "the store is full" in cluster.log_of(FULL)
        with cluster.client(FULL) as client, pytest.raises(ApiError) as err:
            client.submit(cluster.record(FULL, 0))
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "raise storage.map_size" in err.value.message
        with cluster.client(FULL) as client:
            health = health_pb2_grpc.HealthStub(client._channel)
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with cluster.client("social-security") as client:  # the others go on
            for result in client.submit_many(cluster.record("social-security", j)
                                             for j in range(50)):
                assert isinstance(result, Ack), result
                checker.acked(result)
        assert cluster.stop(FULL) == 0  # a clean shutdown, even halted
        cluster.set_config(FULL, "storage", "map_size", str(256 << 20))
        cluster.restart(FULL)
        cluster.wait_ready([FULL])  # opening re-checks tree, chain and root: intact
        wait_for(lambda: "caught up" in cluster.log_of(FULL), 60)
        with cluster.client(FULL) as client:  # and it takes writes again
            checker.acked(client.submit(cluster.record(FULL, 1)))
        print(checker.verify(cluster, [*VALIDATORS, OBSERVER]).as_dict())

"""Four validators and an observer as real processes on 127.0.0.1, used through the client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ledger.genesis import TrustRoot
from ledger.receipts import verify_receipt
from ledger.records import Envelope
from node.client import Ack, ApiError, Refused
from proto import ledger_pb2
from tests.integration.cluster import Cluster, running_cluster

VALIDATORS = ["tax-agency", "social-security", "health-insurance", "statistics-office"]
EVERYONE = [*VALIDATORS, "audit-office"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("net") / "net") as c:
        yield c


def test_records_submitted_to_any_node_commit_everywhere(cluster: Cluster) -> None:
    acks: list[Ack] = []
    for agency in VALIDATORS:  # each agency through its own node
        with cluster.client(agency) as client:
            acks.append(client.submit(cluster.record(agency, 0)))
            for result in client.submit_many(cluster.record(agency, i) for i in range(1, 25)):
                assert isinstance(result, Ack), result
                acks.append(result)
    assert len(acks) == 100
    assert len({a.index for a in acks}) == 100
    size = max(a.checkpoint.size for a in acks)
    root = cluster.wait_same_root(EVERYONE, size=size)
    with cluster.client("statistics-office", via="audit-office") as client:
        checkpoint = client.checkpoint()
        assert checkpoint.size >= size
        record = client.get_record(index=acks[42].index)  # verified read from the observer
        assert record.record.body.agency in VALIDATORS
    assert len(root) == 32


def test_receipts_from_the_network_verify_offline(cluster: Cluster, tmp_path: Path) -> None:
    with cluster.client("health-insurance") as client:
        ack = client.submit(cluster.record("health-insurance", 7))
        verified = client.get_record(record_id=ack.record_id)
    trust = TrustRoot.load(cluster.net.genesis_path)
    result = verify_receipt(verified.receipt, verified.record.envelope.raw, trust)
    assert result.index == ack.index and result.record is not None


def test_bad_inputs_get_clear_status_codes(cluster: Cluster) -> None:
    good = cluster.record("tax-agency", 1)
    with cluster.client("tax-agency") as client:
        cases: list[tuple[bytes, grpc.StatusCode, str]] = [
            (b"\x0a\xff\xff", grpc.StatusCode.INVALID_ARGUMENT, "protobuf"),
            (_tamper(good), grpc.StatusCode.UNAUTHENTICATED, "does not verify"),
            (cluster.record("social-security", 1).raw, grpc.StatusCode.PERMISSION_DENIED,
             "may not submit records of social-security"),
            (b"\x0a" + b"\x80\x80\x05" + b"x" * 70_000, grpc.StatusCode.RESOURCE_EXHAUSTED,
             "limit"),
        ]
        for raw, code, message in cases:
            with pytest.raises(ApiError) as err:
                client.submit(raw)
            assert err.value.code == code, err.value
            assert message in err.value.message
        client.submit(good)
        with pytest.raises(ApiError) as err:
            client.submit(good)
        assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    with cluster.client("audit-office", via="tax-agency") as auditor:
        with pytest.raises(ApiError) as err:
            auditor.submit(cluster.record("tax-agency", 2))
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert auditor.get_record(index=0).index == 0  # but it may read
    with cluster.client("tax-agency", via="audit-office") as client:
        with pytest.raises(ApiError) as err:
            client.submit(cluster.record("tax-agency", 3))
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_stream_answers_refusals_in_line(cluster: Cluster) -> None:
    good = [cluster.record("social-security", i) for i in range(3)]
    with cluster.client("social-security") as client:
        client.submit(good[0])
        acks = list(client.submit_many([good[1], good[2]]))
        assert [a.record_id for a in acks] == [good[1].record_id, good[2].record_id]
        bad = Envelope.from_bytes(_tamper(cluster.record("social-security", 9)))
        results = list(client.submit_many([good[0], bad, cluster.record("social-security", 4)]))
        assert isinstance(results[0], Refused) and results[0].code == grpc.StatusCode.ALREADY_EXISTS
        assert isinstance(results[1], Refused)
        assert results[1].code == grpc.StatusCode.UNAUTHENTICATED
        assert isinstance(results[2], Ack)  # the stream went on after the refusals


def test_watch_streams_committed_records(cluster: Cluster) -> None:
    with cluster.client("tax-agency") as client:
        ack = client.submit(cluster.record("tax-agency", 99))
        seen = []
        for committed in client.watch(from_index=ack.index):
            seen.append(committed)
            break
    assert seen[0].index == ack.index
    assert Envelope.from_bytes(seen[0].envelope).record_id == ack.record_id


def _tamper(envelope: Envelope) -> bytes:
    msg = ledger_pb2.Envelope.FromString(envelope.raw)
    msg.signature = bytes(64)
    return msg.SerializeToString(deterministic=True)


def test_unpinned_client_certificate_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from node.client import LedgerClient
    from node.tls import generate_identity

    cert, key = generate_identity("client.intruder", datetime.now(UTC), 1)
    node = cluster.node("tax-agency")
    genesis = cluster.net.genesis_path.read_bytes()
    with LedgerClient.connect(node.address, genesis, cert, key, "node.tax-agency",
                              timeout=5) as intruder, pytest.raises(ApiError) as err:
        intruder.status()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert os.path.exists(cluster.net.genesis_path)


def test_health_reflection_and_metrics_are_served(cluster: Cluster) -> None:
    import urllib.request

    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with cluster.client("tax-agency") as client:
        channel = client._channel
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"shadowledger.v1.Ledger", "shadowledger.v1.Peer",
                "grpc.health.v1.Health"} <= services
        client.submit(cluster.record("tax-agency", 500))
    metrics_url = f"http://{cluster.node('tax-agency').metrics_address}/metrics"
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    for name in ("shadowledger_height", "shadowledger_records_committed_total",
                 "shadowledger_mempool_records", "shadowledger_peers_connected",
                 "shadowledger_commit_latency_seconds_count"):
        assert name in text, name
    height = next(line for line in text.splitlines() if line.startswith("shadowledger_height"))
    assert float(height.split()[-1]) >= 1

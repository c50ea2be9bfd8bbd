"""Privacy by design on a real 4-node cluster: delivery, erasure, subject reports.

Every sharing event names a committed, countersigned agreement and is authored by its
provider, as the validators' agreement check requires.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ledger.agreements import agreement_body, countersign
from ledger.errors import VerificationError
from ledger.records import sign_record
from node.client import ApiError
from node.config import load_client_profile, read_signing_key
from node.privacy_client import PrivacyClient
from proto import node_pb2, node_pb2_grpc
from tests.integration.cluster import NETWORK, Cluster, running_cluster

TAX, SOCIAL, HEALTH, STATS = ("tax-agency", "social-security", "health-insurance",
                              "statistics-office")
AUDITOR = "audit-office"
DATASET, PURPOSE = "income-records", "benefit-eligibility"
SUBJECT = "NIN-19700101-4711"
OTHER_SUBJECT = "NIN-19851224-0815"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("privacy") / "net") as c:
        yield c


def _key(cluster: Cluster, agency: str):  # type: ignore[no-untyped-def]
    profile = load_client_profile(cluster.profile_path(agency))
    assert profile.record_key is not None
    return read_signing_key(profile.record_key)


def commit_agreement(cluster: Cluster, provider: str, recipient: str,
                     basis: str = "Social Code s.12") -> bytes:
    """A countersigned agreement, authored by the provider; returns its record id."""
    now = int(time.time() * 1000)
    body = agreement_body(
        network=NETWORK, author=provider, provider=provider, recipient=recipient,
        datasets=[DATASET], purpose=PURPOSE, legal_basis=basis,
        valid_from_ms=now - 3_600_000, valid_until_ms=now + 86_400_000,
        countersigner=_key(cluster, recipient).verifier, nonce=os.urandom(16),
        created_ms=now,
    )
    envelope = sign_record(countersign(body, _key(cluster, recipient)), _key(cluster, provider))
    with cluster.client(provider) as client:
        return client.submit(envelope).record_id


def privacy(cluster: Cluster, agency: str, via: str | None = None) -> PrivacyClient:
    node = cluster.node(via) if via else None
    return PrivacyClient.from_profile(
        cluster.profile_path(agency), address=node.address if node else None,
        server_name=f"node.{via}" if via else None)


@pytest.fixture(scope="module")
def agreements(cluster: Cluster) -> dict[str, bytes]:
    return {SOCIAL: commit_agreement(cluster, TAX, SOCIAL),
            HEALTH: commit_agreement(cluster, TAX, HEALTH, "Health Insurance Act s.3")}


def _share(cluster: Cluster, agreements: dict[str, bytes], recipient: str, subject: str,
           payload: bytes):  # type: ignore[no-untyped-def]
    with privacy(cluster, TAX) as tax:
        shared = tax.share(agreement_id=agreements[recipient], recipient=recipient,
                           dataset=DATASET, purpose=PURPOSE, subject_id=subject,
                           payload=payload)
    # Every node has it before anyone delivers (a lagging node answers NOT_FOUND).
    cluster.wait_same_root([TAX, SOCIAL, HEALTH, STATS], shared.ack.checkpoint.size)
    return shared


def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        call()
    return err.value.code


def test_deliver_fetch_verify_then_erase(cluster: Cluster, agreements: dict[str, bytes]
                                         ) -> None:
    payload = f"income 2025 of {SUBJECT}: 41,250 EUR".encode()
    shared = _share(cluster, agreements, SOCIAL, SUBJECT, payload)
    event_id = shared.ack.record_id
    with privacy(cluster, TAX, via=SOCIAL) as tax:
        assert tax.deliver(event_id) == shared.ack.index
        assert _code(lambda: tax.deliver(event_id)) == grpc.StatusCode.ALREADY_EXISTS
    with privacy(cluster, SOCIAL) as social:
        opened = social.fetch(event_id)
        assert opened.payload == payload and opened.provider == TAX
        assert opened.event.index == shared.ack.index
        salt_file, payload_file = social.openings.paths(event_id)  # type: ignore[union-attr]
        assert payload_file.read_bytes() == payload
        sealed = social._stub.FetchDelivery(node_pb2.DeliveryRef(event_id=event_id)).sealed
        store = cluster.node(SOCIAL).config_path.parent / "deliveries" / "data.mdb"
        assert sealed[:64] in store.read_bytes()

        erased, removed = social.erase(event_id)
        assert erased > len(payload) and removed == 2
        assert not salt_file.exists() and not payload_file.exists()
        assert sealed[:64] not in store.read_bytes()  # compacted: not even a free page
        assert _code(lambda: social.fetch(event_id)) == grpc.StatusCode.NOT_FOUND
        assert _code(lambda: social.erase(event_id)) == grpc.StatusCode.NOT_FOUND
        # The ledger still verifies the event; nothing opens its commitment any more.
        still = social.client.get_record(record_id=event_id)
        assert still.record.body.sharing_event.payload_size == len(payload)
        record = cluster.net.dir / "erased-event.record"
        receipt = cluster.net.dir / "erased-event.tlog-proof"
        record.write_bytes(still.record.envelope.raw)
        receipt.write_bytes(still.receipt)
        audited = _cli("audit", "verify-receipt", receipt, "--record", record,
                       "--trust", cluster.net.genesis_path)
        assert audited.returncode == 0 and audited.stdout.startswith("OK"), audited.stderr
    recipient_files = [p for p in (cluster.net.dir / SOCIAL).rglob("*") if p.is_file()]
    assert len(recipient_files) > 5
    for path in recipient_files:  # node store, client openings, keys, logs: no salt left
        assert shared.salt not in path.read_bytes(), path
    with privacy(cluster, TAX, via=SOCIAL) as tax:  # erased stays erased
        assert _code(lambda: tax.deliver(event_id, shared.salt, payload)) == \
            grpc.StatusCode.ALREADY_EXISTS


def test_wrong_or_unauthorized_agencies_are_refused(
        cluster: Cluster, agreements: dict[str, bytes]) -> None:
    payload = b"household composition: 2 adults, 1 child"
    shared = _share(cluster, agreements, SOCIAL, SUBJECT, payload)
    event_id = shared.ack.record_id
    args = (event_id, shared.salt, payload)
    with privacy(cluster, HEALTH, via=SOCIAL) as health:  # not the provider
        assert _code(lambda: health.deliver(*args)) == grpc.StatusCode.PERMISSION_DENIED
    with privacy(cluster, TAX, via=HEALTH) as tax:  # not the recipient's node
        with pytest.raises(ApiError) as err:
            tax.deliver(*args)
        error = err.value
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "node.social-security" in error.message
    with privacy(cluster, TAX, via=SOCIAL) as tax:
        assert _code(lambda: tax.deliver(os.urandom(32), shared.salt, payload)) == \
            grpc.StatusCode.NOT_FOUND  # not committed: the client cannot even verify it
        stub = node_pb2_grpc.PrivacyStub(tax.client.channel)  # type: ignore[no-untyped-call]
        raw_cases = [
            (os.urandom(32), b"x" * 200, grpc.StatusCode.NOT_FOUND, "no committed record"),
            (b"short", b"x" * 200, grpc.StatusCode.INVALID_ARGUMENT, "32-byte"),
            (agreements[SOCIAL], b"x" * 200, grpc.StatusCode.FAILED_PRECONDITION,
             "not a sharing event"),
            (event_id, b"x" * 20, grpc.StatusCode.INVALID_ARGUMENT, "sealed payload is 20"),
            (event_id, b"x" * (1 << 20 + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, "at most"),
        ]
        for eid, sealed, code, message in raw_cases:
            with pytest.raises(grpc.RpcError) as err:
                stub.Deliver(node_pb2.DeliverRequest(event_id=eid, sealed=sealed), timeout=10)
            assert err.value.code() == code, (code, err.value.details())
            assert message in (err.value.details() or "")
        tax.deliver(event_id)
        # The provider may not read back or erase what it delivered to social-security.
        assert _code(lambda: tax.fetch(event_id)) == grpc.StatusCode.PERMISSION_DENIED
        assert _code(lambda: tax.erase(event_id)) == grpc.StatusCode.PERMISSION_DENIED
    with privacy(cluster, AUDITOR, via=SOCIAL) as auditor:
        assert _code(lambda: auditor._call(
            auditor._stub.FetchDelivery, node_pb2.DeliveryRef(event_id=event_id))) == \
            grpc.StatusCode.PERMISSION_DENIED
    with privacy(cluster, SOCIAL) as social:
        social.box_key = os.urandom(32)  # a key the payload was not sealed to
        with pytest.raises(VerificationError, match="does not open"):
            social.fetch(event_id)


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_share_deliver_fetch_erase(cluster: Cluster, agreements: dict[str, bytes],
                                       tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"benefit claim 2025-044: approved")
    tax, social = cluster.profile_path(TAX), cluster.profile_path(SOCIAL)
    shared = _cli("share", "--profile", tax, "--agreement", agreements[SOCIAL].hex(),
                  "--recipient", SOCIAL, "--dataset", DATASET, "--purpose", PURPOSE,
                  "--subject", OTHER_SUBJECT, "--payload", payload)
    assert shared.returncode == 0, shared.stderr
    event = shared.stdout.split()[1]
    cluster.wait_same_root([TAX, SOCIAL, HEALTH, STATS], cluster.status(TAX)[1])
    sent = _cli("deliver", "send", "--profile", tax, "--event", event,
                "--node", cluster.node(SOCIAL).address)
    assert sent.returncode == 0, sent.stderr
    fetched = _cli("deliver", "fetch", "--profile", social, "--event", event)
    assert fetched.returncode == 0 and "opens its on-ledger commitment" in fetched.stdout
    opened = social.parent / "openings" / f"{event}.payload"
    assert opened.read_bytes() == payload.read_bytes()
    nothing = _cli("deliver", "fetch", "--profile", tax, "--event", event,  # its own node
                   "--openings", tmp_path / "o")
    assert nothing.returncode == 2 and "NOT_FOUND" in nothing.stderr
    erased = _cli("deliver", "erase", "--profile", social, "--event", event)
    assert erased.returncode == 0, erased.stderr
    assert not opened.exists()
    provider_copy = _cli("deliver", "erase", "--profile", tax, "--event", event, "--local-only")
    assert provider_copy.returncode == 0 and "2 local files" in provider_copy.stdout
    again = _cli("deliver", "fetch", "--profile", social, "--event", event)
    assert again.returncode == 2 and "NOT_FOUND" in again.stderr and "erased" in again.stderr


def test_subject_report_verified_by_the_audit_cli(
        cluster: Cluster, agreements: dict[str, bytes], tmp_path: Path) -> None:
    mine = [_share(cluster, agreements, SOCIAL, "NIN-20000229-0001", b"r1"),
            _share(cluster, agreements, HEALTH, "NIN-20000229-0001", b"r2"),
            _share(cluster, agreements, SOCIAL, "NIN-20000229-0001", b"r3")]
    _share(cluster, agreements, SOCIAL, "NIN-20000229-0002", b"someone else")
    out = tmp_path / "report"
    result = _cli("report", "subject", "--profile", cluster.profile_path(TAX),
                  "--subject", "NIN-20000229-0001", "--out", out, "--verify-complete")
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "report.json").read_text())
    assert [e["index"] for e in doc["events"]] == [s.ack.index for s in mine]
    assert [e["recipient"] for e in doc["events"]] == [SOCIAL, HEALTH, SOCIAL]
    assert [e["legal_basis"] for e in doc["events"]] == [
        "Social Code s.12", "Health Insurance Act s.3", "Social Code s.12"]
    assert doc["completeness"].startswith("verified")
    assert "NIN-20000229-0001" in (out / "report.txt").read_text()
    for entry in doc["events"]:
        for evidence in (entry["evidence"], entry["agreement"]["evidence"]):
            check = _cli("audit", "verify-receipt", out / evidence["receipt"],
                         "--record", out / evidence["record"],
                         "--trust", cluster.net.genesis_path)
            assert check.returncode == 0 and check.stdout.startswith("OK"), check.stderr
    with privacy(cluster, SOCIAL) as social:  # another agency's key: other pseudonyms
        assert social.subject_events("NIN-20000229-0001") == []
    with privacy(cluster, TAX) as tax:  # a node whose index hides an event is caught
        honest = tax.subject_indices
        tax.subject_indices = lambda p: iter(list(honest(p))[1:])  # type: ignore[method-assign]
        assert len(tax.subject_events("NIN-20000229-0001")) == 2
        with pytest.raises(VerificationError, match=f"omits events \\[{mine[0].ack.index}\\]"):
            tax.subject_events("NIN-20000229-0001", verify_complete=True)


def test_no_personal_data_in_any_node_store(cluster: Cluster, agreements: dict[str, bytes]
                                            ) -> None:
    """Everything the tests above shared, plaintext, is absent from every byte stored."""
    secrets = [SUBJECT, OTHER_SUBJECT, "NIN-20000229-0001", "NIN-20000229-0002"]
    payloads = [b"household composition: 2 adults, 1 child", b"benefit claim 2025-044",
                b"someone else", f"income 2025 of {SUBJECT}".encode()]
    tree_size = cluster.status(TAX)[1]
    cluster.wait_same_root([TAX, SOCIAL, HEALTH, STATS, AUDITOR], tree_size)
    needles = [s.encode() for s in secrets] + payloads
    scanned = []
    for node in cluster.net.nodes:
        for path in node.config_path.parent.glob("*/*.mdb"):
            data = path.read_bytes()
            scanned.append((path.parent.name, path.name))
            for needle in needles:
                assert needle not in data, (needle, path)
    stores = [("data", "data.mdb"), ("deliveries", "data.mdb")]
    assert sorted(set(scanned) & set(stores)) == stores  # the ledger and the delivery store
    assert len([s for s in scanned if s in stores]) == 2 * len(cluster.net.nodes)
    with cluster.client(STATS) as client:
        for item in client.watch():
            assert all(n not in item.envelope for n in needles)
            if item.index + 1 == tree_size:
                break

"""Hostile calls against a running network: malformed, oversized and replayed messages
to every method of the client API and the peer API, and the authentication and
authorization refusals. The node must answer each with a clear status (never UNKNOWN
or INTERNAL), never crash, keep committing, and keep its memory bounded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.crypto import Ed25519Signer, sign_vote
from consensus.messages import VoteType
from ledger.genesis import Genesis, genesis_hash
from ledger.keys import SigningKey
from ledger.records import sign_record
from node.client import Ack, ApiError, Refused
from node.config import read_signing_key
from node.tls import channel_options, genesis_node_pems, pin_bundle
from proto import ledger_pb2, node_pb2
from tests.integration.cluster import NETWORK, Cluster, running_cluster

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
TARGET = "tax-agency"
CLEAR = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.ALREADY_EXISTS,
}
STREAMING = {"Watch": "unary_stream", "SubmitStream": "stream_stream"}
UNARY = ("Submit", "GetRecord", "GetReceipt", "GetConsistencyProof", "GetCheckpoint",
         "GetStatus")
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("net") / "net") as c:
        with c.client(TARGET) as client:
            for result in client.submit_many(c.record(TARGET, i) for i in range(20)):
                assert isinstance(result, Ack), result
        yield c


def _rss_kib(cluster: Cluster, agency: str) -> int:
    status = Path(f"/proc/{cluster.procs[agency].pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmRSS:")))


def _code(call: object, *args: object, **kw: object) -> grpc.StatusCode:
    try:
        result = call(*args, **kw)  # type: ignore[operator]
        if hasattr(result, "__next__"):
            for _ in result:
                break
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]


def _node_channel(cluster: Cluster, as_node: str, target: str,
                  max_bytes: int = 8 << 20) -> grpc.Channel:
    """A channel presenting ``as_node``'s node certificate: the peer API's own clients."""
    keys = cluster.node(as_node).config_path.parent / "keys"
    genesis = Genesis.from_bytes(cluster.net.genesis_path.read_bytes())
    creds = grpc.ssl_channel_credentials(
        pin_bundle(genesis_node_pems(genesis)), (keys / "node.key").read_bytes(),
        (keys / "node.crt").read_bytes())
    return grpc.secure_channel(cluster.node(target).address, creds,
                               channel_options(f"node.{target}", max_bytes))


# --- the client API ----------------------------------------------------------------------


def test_malformed_and_random_requests_get_clear_status_codes(cluster: Cluster) -> None:
    rss_before = _rss_kib(cluster, TARGET)
    seen: dict[str, set[str]] = {}
    with cluster.client(TARGET) as client:
        channel = client._channel
        calls = {m: channel.unary_unary(f"/shadowledger.v1.Ledger/{m}") for m in UNARY}
        calls["Watch"] = channel.unary_stream("/shadowledger.v1.Ledger/Watch")

        @FUZZ_SETTINGS
        @given(st.sampled_from(sorted(calls)), st.binary(max_size=512))
        def check(method: str, data: bytes) -> None:
            code = _code(calls[method], data, timeout=2)
            seen.setdefault(method, set()).add(code.name)
            if method == "Watch" and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return  # a valid from_index past the head: the stream waits, as it should
            assert code in CLEAR, (method, data, code)

        check()
    assert cluster.procs[TARGET].poll() is None
    assert "INVALID_ARGUMENT" in seen["GetRecord"]
    print("api fuzz status codes", seen, "rss KiB", rss_before, _rss_kib(cluster, TARGET))


def test_regressions_found_by_fuzzing(cluster: Cluster) -> None:
    """Both answered UNKNOWN / INTERNAL before: now INVALID_ARGUMENT saying what is wrong."""
    with cluster.client(TARGET) as client:
        get = client._channel.unary_unary("/shadowledger.v1.Ledger/GetRecord")
        submit = client._channel.unary_unary("/shadowledger.v1.Ledger/Submit")
        for call, data, message in (
            (get, node_pb2.GetRecordRequest(record_id=b"").SerializeToString(),
             "record_id must be 32 bytes"),
            (submit, b"\xff\xff\xff", "request is not a valid protobuf message"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call(data, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in err.value.details()


@st.composite
def structured(draw: st.DrawFn) -> tuple[str, bytes]:
    """Well-formed requests with hostile field values (huge indexes, sizes, ids)."""
    u64 = st.integers(0, 2**64 - 1)
    method = draw(st.sampled_from(("GetRecord", "GetReceipt", "GetConsistencyProof",
                                   "GetCheckpoint", "Submit")))
    if method in ("GetRecord", "GetReceipt"):
        if draw(st.booleans()):
            req = node_pb2.GetRecordRequest(index=draw(u64), tree_size=draw(u64))
        else:
            req = node_pb2.GetRecordRequest(record_id=draw(st.binary(max_size=100)))
    elif method == "GetConsistencyProof":
        req = node_pb2.ConsistencyRequest(size1=draw(u64), size2=draw(u64))
    elif method == "GetCheckpoint":
        req = node_pb2.CheckpointRequest(tree_size=draw(u64))
    else:
        req = node_pb2.SubmitRequest(envelope=draw(st.binary(max_size=300)))
    return method, req.SerializeToString()


def test_hostile_field_values_get_clear_status_codes(cluster: Cluster) -> None:
    with cluster.client(TARGET) as client:
        channel = client._channel

        @FUZZ_SETTINGS
        @given(structured())
        def check(case: tuple[str, bytes]) -> None:
            method, data = case
            call = channel.unary_unary(f"/shadowledger.v1.Ledger/{method}")
            code = _code(call, data, timeout=5)
            assert code in CLEAR, (method, data, code)

        check()
        assert client.status().tree_size >= 20  # still serving


def test_oversized_messages_are_refused_with_resource_exhausted(cluster: Cluster) -> None:
    keys = cluster.profile_path(TARGET).parent / "keys"
    genesis = Genesis.from_bytes(cluster.net.genesis_path.read_bytes())
    creds = grpc.ssl_channel_credentials(pin_bundle(genesis_node_pems(genesis)),
                                         (keys / "client.key").read_bytes(),
                                         (keys / "client.crt").read_bytes())
    big = 64 << 20  # the client would send it; the node must refuse it
    with grpc.secure_channel(cluster.node(TARGET).address, creds,
                             channel_options(f"node.{TARGET}", big)) as channel:
        submit = channel.unary_unary("/shadowledger.v1.Ledger/Submit")
        huge = node_pb2.SubmitRequest(envelope=os.urandom(6 << 20)).SerializeToString()
        assert _code(submit, huge, timeout=30) == grpc.StatusCode.RESOURCE_EXHAUSTED
        many = node_pb2.SubmitRequest(envelopes=[os.urandom(60_000)] * 100)
        stream = channel.stream_stream("/shadowledger.v1.Ledger/SubmitStream")
        code = _code(stream, iter([many.SerializeToString()]), timeout=30)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with cluster.client(TARGET) as client:  # and the node is fine
        assert isinstance(client.submit(cluster.record(TARGET, 10_000)), Ack)


def test_replayed_records_are_refused_not_duplicated(cluster: Cluster) -> None:
    record = cluster.record(TARGET, 20_000)
    with cluster.client(TARGET) as client:
        ack = client.submit(record)
        for _ in range(20):
            with pytest.raises(ApiError) as err:
                client.submit(record)
            assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
        results = list(client.submit_many([record] * 50))
        assert all(isinstance(r, Refused) and r.code == grpc.StatusCode.ALREADY_EXISTS
                   for r in results)
        assert client.get_record(record_id=ack.record_id).index == ack.index


# --- the peer API ------------------------------------------------------------------------


@st.composite
def peer_messages(draw: st.DrawFn) -> bytes:
    blob = st.binary(max_size=400)
    kind = draw(st.sampled_from(("proposal", "vote", "records", "checkpoint_signature",
                                 "block_request", "block", "hello", "commit", "raw")))
    msg = node_pb2.PeerMessage()
    if kind == "proposal":
        msg.proposal.CopyFrom(node_pb2.ProposalMessage(proposal=draw(blob), block=draw(blob)))
    elif kind == "vote":
        msg.vote = draw(blob)
    elif kind == "records":
        msg.records.CopyFrom(node_pb2.RecordBatch(envelopes=draw(st.lists(blob, max_size=5))))
    elif kind == "checkpoint_signature":
        msg.checkpoint_signature.CopyFrom(node_pb2.CheckpointSignature(
            tree_size=draw(st.integers(0, 2**64 - 1)),
            signature_line=draw(st.text(max_size=200))))
    elif kind == "block_request":
        msg.block_request.CopyFrom(node_pb2.BlockRequest(
            height=draw(st.integers(0, 2**64 - 1)), block_id=draw(blob)))
    elif kind == "block":
        msg.block.CopyFrom(node_pb2.BlockMessage(height=draw(st.integers(0, 2**64 - 1)),
                                                 block=draw(blob)))
    elif kind == "hello":
        msg.hello.CopyFrom(node_pb2.Hello(node=draw(st.text(max_size=30)),
                                          height=draw(st.integers(0, 2**64 - 1))))
    elif kind == "commit":
        msg.commit.CopyFrom(node_pb2.CommittedBlock(block=draw(blob), certificate=draw(blob)))
    else:
        return draw(st.binary(max_size=400))
    return msg.SerializeToString()


def test_hostile_peer_messages_are_dropped_and_the_node_goes_on(cluster: Cluster) -> None:
    """Even a pinned node (here the auditor's observer, or a stolen node key) sending
    garbage, forged and replayed consensus messages cannot crash a validator."""
    rss_before = _rss_kib(cluster, TARGET)
    with _node_channel(cluster, "audit-office", TARGET) as channel:
        gossip = channel.stream_unary("/shadowledger.v1.Peer/Gossip")
        blocks = channel.unary_stream("/shadowledger.v1.Peer/GetBlocks")

        @FUZZ_SETTINGS
        @given(st.lists(peer_messages(), min_size=1, max_size=4), st.binary(max_size=64))
        def check(messages: list[bytes], blocks_request: bytes) -> None:
            code = _code(gossip, iter(messages), timeout=5)
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), code
            code = _code(blocks, blocks_request, timeout=1)
            assert code in CLEAR | {grpc.StatusCode.DEADLINE_EXCEEDED}, code

        check()
        replayed = _replayed_votes(cluster)
        assert _code(gossip, iter(replayed * 50), timeout=10) == grpc.StatusCode.OK
    assert cluster.procs[TARGET].poll() is None
    with cluster.client(TARGET) as client:  # consensus still works
        assert isinstance(client.submit(cluster.record(TARGET, 30_000)), Ack)
    growth = _rss_kib(cluster, TARGET) - rss_before
    print("peer fuzz rss growth KiB", growth)
    assert growth < 64 * 1024, f"RSS grew by {growth} KiB"


def _replayed_votes(cluster: Cluster) -> list[bytes]:
    """Validly signed precommits for height 1, long decided: a replay must be ignored."""
    chain = genesis_hash(cluster.net.genesis_path.read_bytes())
    out = []
    for agency in ("social-security", "health-insurance"):
        key = read_signing_key(cluster.node(agency).config_path.parent / "keys"
                               / f"validator.{agency}.skey")
        vote = sign_vote(Ed25519Signer(key.seed), chain, 1, 0, VoteType.PRECOMMIT,
                         hashlib.sha256(b"old").digest())
        out.append(node_pb2.PeerMessage(vote=vote.to_bytes()).SerializeToString())
    return out


# --- authentication and authorization ----------------------------------------------------


def _client_with(cluster: Cluster, cert: bytes | None, key: bytes | None) -> grpc.Channel:
    genesis = Genesis.from_bytes(cluster.net.genesis_path.read_bytes())
    creds = grpc.ssl_channel_credentials(pin_bundle(genesis_node_pems(genesis)), key, cert)
    return grpc.secure_channel(cluster.node(TARGET).address, creds,
                               channel_options(f"node.{TARGET}"))


def _status(channel: grpc.Channel) -> grpc.StatusCode:
    call = channel.unary_unary("/shadowledger.v1.Ledger/GetStatus")
    return _code(call, node_pb2.StatusRequest().SerializeToString(), timeout=5)


def test_no_client_certificate_is_refused(cluster: Cluster) -> None:
    with _client_with(cluster, None, None) as channel:
        assert _status(channel) == grpc.StatusCode.UNAVAILABLE  # handshake refused


def test_certificate_from_an_unpinned_ca_is_refused(cluster: Cluster) -> None:
    """A certificate for the right name, issued by a CA the genesis does not pin."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Rogue CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"client.{TARGET}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"client.{TARGET}")]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with _client_with(cluster, chain, key_pem) as channel:
        assert _status(channel) == grpc.StatusCode.UNAVAILABLE


def test_records_of_unknown_agencies_or_keys_are_unauthenticated(cluster: Cluster) -> None:
    rogue = SigningKey.generate(TARGET, os.urandom)  # right name, key not in the genesis
    ghost = SigningKey.generate("ghost-agency", os.urandom)  # agency not in the genesis
    with cluster.client(TARGET) as client:
        for key, agency in ((rogue, TARGET), (ghost, "ghost-agency"), (ghost, TARGET)):
            body = ledger_pb2.RecordBody(network=NETWORK, agency=agency, nonce=os.urandom(16),
                                         anchor=ledger_pb2.Anchor(source="s", version="1",
                                                                  commitment=bytes(32)))
            with pytest.raises(ApiError) as err:
                client.submit(sign_record(body, key))
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED, err.value


def test_agency_writing_on_anothers_behalf_is_denied_in_a_stream(cluster: Cluster) -> None:
    with cluster.client(TARGET) as client:
        results = list(client.submit_many([cluster.record("social-security", 1),
                                           cluster.record(TARGET, 40_000)]))
    assert isinstance(results[0], Refused)
    assert results[0].code == grpc.StatusCode.PERMISSION_DENIED
    assert "may not submit records of social-security" in results[0].message
    assert isinstance(results[1], Ack)


def test_api_clients_may_not_use_the_peer_service(cluster: Cluster) -> None:
    with cluster.client(TARGET) as client:
        gossip = client._channel.stream_unary("/shadowledger.v1.Peer/Gossip")
        blocks = client._channel.unary_stream("/shadowledger.v1.Peer/GetBlocks")
        assert _code(gossip, iter([b""]), timeout=5) == grpc.StatusCode.PERMISSION_DENIED
        request = node_pb2.BlocksRequest(from_height=1).SerializeToString()
        assert _code(blocks, request, timeout=5) == grpc.StatusCode.PERMISSION_DENIED


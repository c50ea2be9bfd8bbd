"""A node that lies: the client, trusting only the genesis, catches every forgery."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import ProofError, SignatureError
from ledger.genesis import Genesis
from ledger.keys import decode_base64, encode_base64
from node.client import ForkDetected, LedgerClient
from node.config import read_signing_key
from node.tls import genesis_all_pems, server_credentials
from proto import node_pb2, node_pb2_grpc
from tests.integration.cluster import Cluster, free_port_range, running_cluster

LIAR = "statistics-office"


class LyingLedger(node_pb2_grpc.LedgerServicer):
    """Forwards to an honest node and tampers with what ``mode`` says."""

    def __init__(self, upstream: Any, mode: str, forged_checkpoint: bytes = b"") -> None:
        self.up = upstream
        self.mode = mode
        self.forged_checkpoint = forged_checkpoint

    def GetReceipt(self, request: Any, context: Any) -> Any:
        response = self.up.GetReceipt(request)
        if self.mode == "proof":
            lines = response.tlog_proof.split(b"\n")
            raw = bytearray(decode_base64(lines[2].decode(), "hash"))  # first proof hash
            raw[0] ^= 1
            lines[2] = encode_base64(bytes(raw)).encode()
            response.tlog_proof = b"\n".join(lines)
        return response

    def GetCheckpoint(self, request: Any, context: Any) -> Any:
        if self.mode in ("checkpoint", "fork"):
            return node_pb2.CheckpointResponse(note=self.forged_checkpoint)
        return self.up.GetCheckpoint(request)

    def GetConsistencyProof(self, request: Any, context: Any) -> Any:
        if self.mode == "fork":  # the best a liar can do: hashes that prove nothing
            return node_pb2.ConsistencyResponse(hashes=[bytes([i]) * 32 for i in range(4)])
        return self.up.GetConsistencyProof(request)

    def Submit(self, request: Any, context: Any) -> Any:
        return self.up.Submit(request)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("net") / "net") as c:
        with c.client("tax-agency") as client:
            acks = list(client.submit_many(c.record("tax-agency", i) for i in range(10)))
        # Acks need 3 of 4 validators: wait until the node the liar forwards to has them too.
        c.wait_same_root([LIAR, "tax-agency"], size=len(acks))
        yield c


def _liar(cluster: Cluster, mode: str, forged: bytes = b"") -> tuple[grpc.Server, str]:
    """Serve ``LIAR``'s pinned identity (its stolen key) on a new port, lying per ``mode``."""
    keys = cluster.node(LIAR).config_path.parent / "keys"
    genesis = Genesis.from_bytes(cluster.net.genesis_path.read_bytes())
    upstream_client = cluster.client("tax-agency", via=LIAR)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    node_pb2_grpc.add_LedgerServicer_to_server(
        LyingLedger(upstream_client._stub, mode, forged), server)
    creds = server_credentials((keys / "node.crt").read_bytes(), (keys / "node.key").read_bytes(),
                               genesis_all_pems(genesis))
    address = f"127.0.0.1:{free_port_range(1)}"
    server.add_secure_port(address, creds)
    server.start()
    return server, address


def _client(cluster: Cluster, address: str, state: Path | None = None) -> LedgerClient:
    keys = cluster.profile_path("tax-agency").parent / "keys"
    return LedgerClient.connect(address, cluster.net.genesis_path.read_bytes(),
                                (keys / "client.crt").read_bytes(),
                                (keys / "client.key").read_bytes(), f"node.{LIAR}", state)


def test_forged_inclusion_proof_is_detected(cluster: Cluster) -> None:
    server, address = _liar(cluster, "proof")
    try:
        with _client(cluster, address) as client, pytest.raises(ProofError):
            client.get_record(index=3)
    finally:
        server.stop(None)


def test_checkpoint_signed_only_by_the_liar_is_refused(cluster: Cluster) -> None:
    own = read_signing_key(cluster.node(LIAR).config_path.parent / "keys"
                           / f"validator.{LIAR}.skey")
    forged = sign_checkpoint(Checkpoint("test.shadow-ledger.example/v1", 10**6, bytes(32)), [own])
    server, address = _liar(cluster, "checkpoint", forged)
    try:
        with _client(cluster, address) as client, pytest.raises(SignatureError, match="need 3"):
            client.checkpoint()
    finally:
        server.stop(None)


def test_split_view_by_colluding_validators_is_detected(cluster: Cluster, tmp_path: Path
                                                        ) -> None:
    """Even 3 stolen validator keys cannot make a fork pass a client that trusted the real log."""
    with cluster.client("tax-agency") as honest:
        trusted = honest.checkpoint()
    keys = [read_signing_key(cluster.node(a).config_path.parent / "keys" / f"validator.{a}.skey")
            for a in ("tax-agency", "social-security", LIAR)]
    fork = sign_checkpoint(Checkpoint(trusted.origin, trusted.size + 5, bytes(32)), keys)
    server, address = _liar(cluster, "fork", fork)
    state = tmp_path / "trusted"
    try:
        with _client(cluster, address, state) as client:
            client._advance(honest_note(cluster))  # the client has seen the real log
            with pytest.raises(ForkDetected) as err:
                client.checkpoint()
        assert err.value.new_note == fork  # both signed checkpoints kept as evidence
        assert state.read_bytes() == err.value.trusted_note  # the fork was not trusted
    finally:
        server.stop(None)


def honest_note(cluster: Cluster) -> bytes:
    with cluster.client("tax-agency") as honest:
        honest.checkpoint()
        assert honest._trusted is not None
        return honest._trusted[1]

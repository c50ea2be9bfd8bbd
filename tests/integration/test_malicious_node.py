"""A node that lies: the client, trusting only the genesis, catches every forgery."""

from __future__ import annotations

import threading
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
        self.proof_calls = 0
        self.answers: list[tuple[int, int]] = []  # SubmitStream: (consistency_from, hashes)

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
        self.proof_calls += 1
        if self.mode == "fork":  # the best a liar can do: hashes that prove nothing
            return node_pb2.ConsistencyResponse(hashes=[bytes([i]) * 32 for i in range(4)])
        return self.up.GetConsistencyProof(request)

    def Submit(self, request: Any, context: Any) -> Any:
        response = self.up.Submit(request)
        if self.mode == "carried-proof" and response.consistency_proof:
            _flip_first(response.consistency_proof)
        return response

    def SubmitStream(self, request_iterator: Any, context: Any) -> Any:
        for response in self.up.SubmitStream(request_iterator):
            self.answers.append((response.consistency_from, len(response.consistency_proof)))
            if self.mode == "carried-proof" and response.consistency_proof:
                _flip_first(response.consistency_proof)
            yield response


def _flip_first(hashes: Any) -> None:
    first = bytearray(hashes[0])
    first[0] ^= 1
    hashes[0] = bytes(first)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("net") / "net") as c:
        with c.client("tax-agency") as client:
            acks = list(client.submit_many(c.record("tax-agency", i) for i in range(10)))
        # Acks need 3 of 4 validators: wait until the node the liar forwards to has them too.
        c.wait_same_root([LIAR, "tax-agency"], size=len(acks))
        yield c


def _liar(cluster: Cluster, mode: str, forged: bytes = b"", servicer: list[LyingLedger] | None
          = None) -> tuple[grpc.Server, str]:
    """Serve ``LIAR``'s pinned identity (its stolen key) on a new port, lying per ``mode``
    (appended to ``servicer`` if given, for its counters)."""
    keys = cluster.node(LIAR).config_path.parent / "keys"
    genesis = Genesis.from_bytes(cluster.net.genesis_path.read_bytes())
    upstream_client = cluster.client("tax-agency", via=LIAR)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    lying = LyingLedger(upstream_client._stub, mode, forged)
    if servicer is not None:
        servicer.append(lying)
    node_pb2_grpc.add_LedgerServicer_to_server(lying, server)
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


def _submit_in_rounds(cluster: Cluster, client: LedgerClient, rounds: int) -> list[int]:
    """One record per stream message, each sent once the previous one is acknowledged, so
    every answer carries a newer checkpoint; the sizes the client trusted after each."""
    sizes: list[int] = []
    acked, done = threading.Event(), threading.Event()

    def records() -> Iterator[Any]:
        for i in range(rounds):
            if done.is_set():
                return
            yield cluster.record("tax-agency", 1000 + i)
            acked.wait(30)
            acked.clear()

    try:
        for _ in client.submit_many(records(), linger=0.0):
            assert client._trusted is not None
            sizes.append(client._trusted[0].size)
            acked.set()
    finally:
        done.set()
        acked.set()
    return sizes


def test_submit_answers_carry_their_consistency_proof(cluster: Cluster) -> None:
    """A client with a trusted checkpoint needs no GetConsistencyProof call per answer: each
    answer proves itself consistent with the previous one (and the first with the
    checkpoint the client named), and the client verifies that proof."""
    lying: list[LyingLedger] = []
    server, address = _liar(cluster, "honest", servicer=lying)
    try:
        with _client(cluster, address) as client:
            client._advance(honest_note(cluster))
            assert client._trusted is not None
            start = client._trusted[0].size
            sizes = _submit_in_rounds(cluster, client, 3)
            single = client.submit(cluster.record("tax-agency", 2000))
        assert sizes[0] > start and sizes == sorted(set(sizes))
        assert single.checkpoint.size > sizes[-1]
        assert [f for f, _ in lying[0].answers] == [start, *sizes[:-1]]
        assert all(n > 0 for _, n in lying[0].answers)
        assert lying[0].proof_calls == 0
    finally:
        server.stop(None)


@pytest.mark.parametrize("how", ["stream", "single"])
def test_forged_carried_consistency_proof_is_detected(cluster: Cluster, how: str) -> None:
    server, address = _liar(cluster, "carried-proof")
    try:
        with _client(cluster, address) as client:
            client._advance(honest_note(cluster))
            with pytest.raises(ForkDetected, match="not consistent"):
                if how == "stream":
                    _submit_in_rounds(cluster, client, 2)
                else:
                    client.submit(cluster.record("tax-agency", 3000))
    finally:
        server.stop(None)

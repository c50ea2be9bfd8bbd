"""A real 4-validator network and a real witness process on 127.0.0.1.

Nodes push final checkpoints to the witness; receipts carry its cosignature and pass
``verify-receipt --witness-quorum 1``; a witness that is down does not stall commits and
catches up after a restart; a split view forged with 3 stolen validator keys is refused
and leaves evidence that ``audit verify-split-view`` confirms.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.genesis import Genesis
from ledger.keys import VerifierKey
from ledger.note import Note
from ledger.witness import CONFLICT, AddCheckpoint
from node.client import Ack, LedgerClient
from node.config import read_signing_key
from node.witness.server import init_witness
from node.witnessing import WitnessConnection, has_cosignature
from proto import node_pb2
from tests.integration.cluster import Cluster, free_port_range, running_cluster

VALIDATORS = ["tax-agency", "social-security", "health-insurance", "statistics-office"]
EXE = [sys.executable, "-m", "node.cli"]


@dataclasses.dataclass
class WitnessProcess:
    config: Path
    url: str
    key: VerifierKey
    proc: subprocess.Popen[bytes] | None = None

    @property
    def folder(self) -> Path:
        return self.config.parent

    def start(self) -> None:
        log = (self.folder / "witness.log").open("ab")
        self.proc = subprocess.Popen([*EXE, "witness", "run", "--config", str(self.config)],
                                     stdout=log, stderr=subprocess.STDOUT)
        port = int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("witness did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _add_witness(cluster: Cluster, folder: Path) -> WitnessProcess:
    """Create the witness, pin it in the genesis and in every validator's config."""
    url = f"http://127.0.0.1:{free_port_range(1)}"
    config, vkey = init_witness(folder, "audit-office/w1", cluster.net.genesis_path,
                                url.removeprefix("http://"), os.urandom)
    key = VerifierKey.from_vkey(vkey)
    genesis = Genesis.from_bytes(cluster.net.genesis_path.read_bytes())
    cluster.net.genesis_path.write_bytes(dataclasses.replace(genesis, witnesses=(key,)).to_bytes())
    for agency in VALIDATORS:
        path = cluster.node(agency).config_path
        path.write_text(path.read_text() + f'\n[[witnesses]]\nurl = "{url}"\nvkey = "{vkey}"\n')
    return WitnessProcess(config, url, key)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, WitnessProcess]]:
    folder = tmp_path_factory.mktemp("witnessed")
    with running_cluster(folder / "net", start=[]) as cluster:
        witness = _add_witness(cluster, folder / "witness")
        witness.start()
        try:
            for agency in VALIDATORS:
                cluster.start(agency)
            cluster.wait_ready(VALIDATORS)
            yield cluster, witness
        finally:
            witness.stop()


def _witnessed_note(cluster: Cluster, witness: WitnessProcess, min_size: int,
                    via: str = "tax-agency", timeout: float = 120.0) -> bytes:
    """The node's latest checkpoint once it covers ``min_size`` and carries the cosignature."""
    deadline = time.monotonic() + timeout
    while True:
        note = b""
        with cluster.client("tax-agency", via=via, timeout=5) as client:
            try:
                note = bytes(client._stub.GetCheckpoint(node_pb2.CheckpointRequest()).note)
            except grpc.RpcError as exc:  # a lagging node may have no final checkpoint yet
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        if note and Checkpoint.from_text(Note.from_bytes(note).text).size >= min_size and \
                has_cosignature(note, witness.key):
            return note
        if time.monotonic() > deadline:
            raise AssertionError(f"no witnessed checkpoint of size >= {min_size}: {note!r}")
        time.sleep(0.3)


def _verify_receipt(tmp: Path, receipt: bytes, record: bytes, genesis: Path, *extra: str
                    ) -> subprocess.CompletedProcess[str]:
    (tmp / "receipt").write_bytes(receipt)
    (tmp / "record").write_bytes(record)
    return subprocess.run([*EXE, "audit", "verify-receipt", str(tmp / "receipt"), "--record",
                           str(tmp / "record"), "--trust", str(genesis), *extra],
                          capture_output=True, text=True, timeout=60)


def test_receipts_carry_the_witness_cosignature(net: tuple[Cluster, WitnessProcess],
                                                tmp_path: Path) -> None:
    cluster, witness = net
    with cluster.client("tax-agency") as client:
        acks = list(client.submit_many(cluster.record("tax-agency", i) for i in range(20)))
    size = max(a.checkpoint.size for a in acks)
    for via in VALIDATORS:  # every validator keeps the cosignature it got
        _witnessed_note(cluster, witness, size, via=via)
    profile = cluster.profile_path("social-security")
    with LedgerClient.from_profile(profile, witness_quorum=1) as client:
        record = client.get_record(index=acks[3].index)
        assert client.trusted_checkpoint is not None
    genesis = cluster.net.genesis_path
    raw = record.record.envelope.raw
    ok = _verify_receipt(tmp_path, record.receipt, raw, genesis, "--witness-quorum", "1")
    assert ok.returncode == 0, ok.stderr
    assert "cosigned by witnesses audit-office/w1" in ok.stdout
    # The same receipt without the witness's line: fine without a witness quorum, refused with.
    lines = record.receipt.decode().split("\n")
    stripped = "\n".join(line for line in lines if "audit-office/w1" not in line).encode()
    assert _verify_receipt(tmp_path, stripped, raw, genesis).returncode == 0
    refused = _verify_receipt(tmp_path, stripped, raw, genesis, "--witness-quorum", "1")
    assert refused.returncode == 1
    assert "FAILED: checkpoint lacks witness cosignatures" in refused.stderr


def test_a_down_witness_does_not_stall_commits(net: tuple[Cluster, WitnessProcess]) -> None:
    cluster, witness = net
    witness.stop()
    with cluster.client("health-insurance") as client:
        acks = list(client.submit_many(cluster.record("health-insurance", i) for i in range(10)))
    assert all(isinstance(a, Ack) for a in acks) and len(acks) == 10
    size = max(a.checkpoint.size for a in acks if isinstance(a, Ack))
    witness.start()  # same state folder: it resumes from what it cosigned before
    _witnessed_note(cluster, witness, size, via="health-insurance")


def test_forged_split_view_is_refused_with_evidence(net: tuple[Cluster, WitnessProcess]
                                                    ) -> None:
    cluster, witness = net
    honest = _witnessed_note(cluster, witness, 1)
    real = Checkpoint.from_text(Note.from_bytes(honest).text)
    stolen = [read_signing_key(cluster.node(a).config_path.parent / "keys" / f"validator.{a}.skey")
              for a in ("tax-agency", "social-security", "statistics-office")]
    forged = sign_checkpoint(Checkpoint(real.origin, real.size, bytes(32)), stolen)
    conn = WitnessConnection(witness.url)
    status, _ = conn.post(AddCheckpoint(real.size, (), forged).to_bytes())
    conn.close()
    assert status == CONFLICT
    alarms = list((witness.folder / "state" / "alarms").glob("same-size-*.json"))
    assert len(alarms) == 1
    done = subprocess.run([*EXE, "audit", "verify-split-view", str(alarms[0]), "--trust",
                           str(cluster.net.genesis_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"CONFIRMED: split view of {real.origin}")
    assert "tax-agency" in done.stdout or "validator" in done.stdout
    log = (witness.folder / "witness.log").read_text()
    assert '"split view alarm"' in log and '"level": "error"' in log
    # Evidence against the wrong network proves nothing.
    other = subprocess.run([*EXE, "audit", "verify-split-view", str(alarms[0]), "--trust",
                            str(witness.folder / "witness.vkey")], capture_output=True,
                           text=True, timeout=60)
    assert other.returncode != 0

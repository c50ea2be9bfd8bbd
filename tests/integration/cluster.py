"""A real local network for tests: node processes on 127.0.0.1, stopped by the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ledger.keys import SigningKey
from ledger.records import Envelope, sign_record
from node.client import Ack, LedgerClient
from node.config import load_client_profile, read_signing_key
from node.localnet import LocalNetwork, LocalNode, generate
from proto import ledger_pb2

NETWORK = "test.shadow-ledger.example/v1"


def free_port_range(count: int, avoid: range = range(0)) -> int:
    """A base port with ``count`` free consecutive ports, none of them in ``avoid`` (ports
    chosen earlier and not bound yet); best effort, loopback only."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base: int = s.getsockname()[1]
        if base + count >= 65000 or any(base + i in avoid for i in range(count)):
            continue
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range on 127.0.0.1")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Cluster:
    net: LocalNetwork
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def node(self, agency: str) -> LocalNode:
        return next(n for n in self.net.nodes if n.agency == agency)

    def start(self, agency: str) -> None:
        node = self.node(agency)
        log = (node.config_path.parent / "node.log").open("ab")
        env = dict(os.environ, GRPC_VERBOSITY="ERROR")
        self.procs[agency] = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "node", "run", "--config", str(node.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )

    def kill(self, agency: str) -> None:
        """kill -9: no clean shutdown."""
        proc = self.procs.pop(agency)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self, agency: str) -> int:
        proc = self.procs.pop(agency)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=30)

    def stop_all(self) -> None:
        """SIGTERM to every node first, then wait for each: the nodes shut down side by
        side (each takes a few seconds: gRPC grace, thread joins)."""
        procs = [self.procs.pop(agency) for agency in list(self.procs)]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def client(self, agency: str, via: str | None = None, timeout: float = 30.0) -> LedgerClient:
        """``agency``'s API client, talking to its own node or to ``via``'s."""
        profile = self.profile_path(agency)
        target = self.node(via) if via else None
        client = LedgerClient.from_profile(
            profile, address=target.address if target else None,
            server_name=f"node.{via}" if via else None,
        )
        client._timeout = timeout
        return client

    def profile_path(self, agency: str) -> Path:
        return next(a.client_profile for a in self.net.agencies if a.name == agency)

    def key(self, agency: str) -> SigningKey:
        """``agency``'s record-signing key, from its client profile."""
        profile = load_client_profile(self.profile_path(agency))
        assert profile.record_key is not None
        return read_signing_key(profile.record_key)

    def record(self, agency: str, i: int, **anchor: object) -> Envelope:
        key = self.key(agency)
        body = ledger_pb2.RecordBody(
            network=NETWORK, agency=agency, nonce=os.urandom(16),
            anchor=ledger_pb2.Anchor(source="registry/persons", version=str(i),
                                     commitment=os.urandom(32)),
        )
        return sign_record(body, key)

    def wait_ready(self, agencies: list[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for agency in agencies:
            while True:
                try:
                    with self.client(self._reader(agency), via=agency, timeout=2) as c:
                        c.status()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

    def _reader(self, via: str) -> str:
        return "tax-agency" if via != "tax-agency" else "social-security"

    def status(self, agency: str) -> tuple[int, int, bytes]:
        with self.client(self._reader(agency), via=agency, timeout=5) as c:
            s = c.status()
        return s.height, s.tree_size, s.root

    def wait_same_root(self, agencies: list[str], size: int, timeout: float = 60.0
                       ) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            states = {a: self.status(a) for a in agencies}
            roots = {root for _, n, root in states.values() if n == size}
            if len(roots) == 1 and all(n == size for _, n, _ in states.values()):
                return roots.pop()
            if time.monotonic() > deadline:
                raise AssertionError(f"nodes did not converge on size {size}: {states}")
            time.sleep(0.3)


def submit_records(cluster: Cluster, agency: str, start: int, count: int) -> list[Ack]:
    """Submit ``count`` of ``agency``'s records through its own node; all must be acked."""
    acks = []
    with cluster.client(agency) as client:
        for result in client.submit_many(cluster.record(agency, i)
                                         for i in range(start, start + count)):
            assert isinstance(result, Ack), result
            acks.append(result)
    return acks


@contextmanager
def running_cluster(folder: Path, start: list[str] | None = None) -> Iterator[Cluster]:
    base = free_port_range(5)
    metrics = free_port_range(5, avoid=range(base, base + 5))
    net = generate(folder, 4, base, NETWORK, datetime.now(UTC), os.urandom,
                   metrics_base_port=metrics)
    _fast_timeouts(net)
    cluster = Cluster(net)
    try:
        names = start if start is not None else [n.agency for n in net.nodes]
        for agency in names:
            cluster.start(agency)
        cluster.wait_ready(names)
        yield cluster
    finally:
        cluster.stop_all()


def _fast_timeouts(net: LocalNetwork) -> None:
    """Shorter consensus timeouts so fault tests finish quickly (still well above RTT)."""
    for node in net.nodes:
        text = node.config_path.read_text()
        text += "\n[consensus]\ntimeout_propose_ms = 600\ntimeout_prevote_ms = 300\n" \
                "timeout_precommit_ms = 300\ntimeout_delta_ms = 200\n"
        node.config_path.write_text(text)

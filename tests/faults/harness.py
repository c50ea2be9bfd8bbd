"""Fault injection over real node processes on 127.0.0.1.

``fault_cluster`` starts the usual local network (4 validators and an observer, as
``tests.integration.cluster``), but every node dials its peers through a ``ProxyMesh``,
so the test can partition the network and slow links down; it can also kill -9 and
restart nodes, give a node a skewed wall clock or a small LMDB map, and run one node as
a Byzantine validator (``tests.faults.byzantine``). ``Load`` threads submit records
from each agency, through its own node, and hand every acknowledgement to the
``AckChecker``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ledger.records import Envelope
from node.client import Ack, ApiError
from node.localnet import LocalNetwork, generate
from tests.faults.checker import AckChecker
from tests.faults.proxy import ProxyMesh
from tests.integration.cluster import NETWORK, Cluster, _fast_timeouts, free_port_range

VALIDATORS = ["tax-agency", "social-security", "health-insurance", "statistics-office"]
OBSERVER = "audit-office"


@dataclass
class FaultCluster(Cluster):
    mesh: ProxyMesh | None = None
    commands: dict[str, list[str]] = field(default_factory=dict)
    """Per node, a launcher other than ``node.cli node run`` (e.g. a Byzantine node)."""
    kills: int = 0
    restarts: int = 0

    def start(self, agency: str) -> None:
        node = self.node(agency)
        args = self.commands.get(agency, ["-m", "node.cli", "node", "run"])
        log = (node.config_path.parent / "node.log").open("ab")
        env = dict(os.environ, GRPC_VERBOSITY="ERROR")
        self.procs[agency] = subprocess.Popen(
            [sys.executable, *args, "--config", str(node.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )

    def kill(self, agency: str) -> None:
        super().kill(agency)
        self.kills += 1

    def restart(self, agency: str) -> None:
        self.start(agency)
        self.restarts += 1

    def start_all(self) -> None:
        names = [n.agency for n in self.net.nodes]
        for agency in names:
            self.start(agency)
        self.wait_ready(names)

    def alive(self, agency: str) -> bool:
        proc = self.procs.get(agency)
        return proc is not None and proc.poll() is None

    def set_config(self, agency: str, section: str, key: str, value: str) -> None:
        """Set ``[section] key = value`` in a node's config (before it starts)."""
        path = self.node(agency).config_path
        text = path.read_text()
        header = f"[{section}]\n"
        line = f"{key} = {value}\n"
        lines = text.splitlines(keepends=True)
        if header not in lines:
            path.write_text(text.rstrip("\n") + f"\n\n{header}{line}")
            return
        start = lines.index(header) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
        kept = [x for x in lines[start:end] if not x.startswith(f"{key} =")]
        path.write_text("".join([*lines[:start], line, *kept, *lines[end:]]))

    def height(self, names: list[str]) -> int:
        """The highest height any of ``names`` reports (nodes that do not answer skipped)."""
        best = 0
        for name in names:
            try:
                best = max(best, self.status(name)[0])
            except Exception:
                continue
        return best

    def log_of(self, agency: str) -> str:
        return (self.node(agency).config_path.parent / "node.log").read_text(errors="replace")


def _mesh_beside(net: LocalNetwork, *reserved: range) -> ProxyMesh:
    """A proxy mesh whose ports (the kernel's choice) are none of the nodes' ports: the
    nodes bind theirs only when they start, so a proxy could take one first and a client
    meant for that node would reach the proxy's target instead (a TLS name mismatch)."""
    taken = {port for ports in reserved for port in ports}
    for _ in range(20):
        mesh = ProxyMesh({n.agency: n.address for n in net.nodes})
        if not any(link.port in taken for link in mesh.links.values()):
            return mesh
        mesh.close()
    raise RuntimeError("no proxy ports apart from the nodes' ports on 127.0.0.1")


@contextmanager
def fault_cluster(folder: Path, *, start: bool = True) -> Iterator[FaultCluster]:
    """A local network whose peer links all pass through a ``ProxyMesh``."""
    base = free_port_range(5)
    metrics = free_port_range(5, avoid=range(base, base + 5))
    net = generate(folder, 4, base, NETWORK, datetime.now(UTC), os.urandom,
                   metrics_base_port=metrics)
    _fast_timeouts(net)
    mesh = _mesh_beside(net, range(base, base + 5), range(metrics, metrics + 5))
    for node in net.nodes:  # dial every peer through the proxy of that directed link
        text = node.config_path.read_text()
        for peer in net.nodes:
            if peer.agency != node.agency:
                text = text.replace(f'address = "{peer.address}"',
                                    f'address = "{mesh.address(node.agency, peer.agency)}"')
        node.config_path.write_text(text)
    cluster = FaultCluster(net, mesh=mesh)
    try:
        if start:
            cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()
        mesh.close()


class Load:
    """Submits records from ``agency`` through its own node until stopped; every Ack goes
    to the checker. A broken stream (node killed, link cut) is reopened after a pause."""

    def __init__(self, cluster: FaultCluster, agency: str, checker: AckChecker,
                 rate: float = 50.0, batch: int = 16) -> None:
        self.cluster = cluster
        self.agency = agency
        self.checker = checker
        self.rate = rate
        self.batch = batch
        self.sent = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{agency}", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=90)

    def _records(self) -> Iterator[Envelope]:
        interval = 1.0 / self.rate
        while not self._stopped.is_set():
            self.sent += 1
            yield self.cluster.record(self.agency, self.sent)
            time.sleep(interval)

    def _run(self) -> None:
        while not self._stopped.is_set():
            if not self.cluster.alive(self.agency):
                self._stopped.wait(0.5)
                continue
            try:
                with self.cluster.client(self.agency, timeout=60) as client:
                    for result in client.submit_many(self._records(), self.batch, linger=0.05):
                        if isinstance(result, Ack):
                            self.checker.acked(result)
                        else:
                            self.checker.refused_with(result.code.name)
            except ApiError as exc:  # node down or link cut: records in flight unacked
                self.checker.refused_with(f"stream:{exc.code.name}")
                self._stopped.wait(0.5)
            except Exception as exc:  # a verification failure in the client is a finding
                self.checker.error(f"{self.agency}: {type(exc).__name__}: {exc}")
                self._stopped.wait(0.5)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


def wait_for(condition: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.2)

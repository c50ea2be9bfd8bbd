"""Running nodes: one daemon (`node run`) and a local network of them (`network local`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ledger.errors import LedgerError
from node.config import load_config
from node.logging_setup import configure_logging, get_logger

if TYPE_CHECKING:
    from node.localnet import LocalNetwork


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def run_node(config_path: Path) -> int:
    """Start a node, serve until SIGTERM or Ctrl-C, then shut down cleanly."""
    config = load_config(config_path)
    configure_logging(config.log.format, config.log.level)
    from node.node import Node

    stop = _stop_on_signals()
    node = Node(config)
    node.start()
    stop.wait()
    node.stop()
    return 0


def run_local(folder: Path, nodes: int, base_port: int, metrics_base_port: int,
              network: str) -> int:
    """Generate a local network into ``folder`` (once), run its nodes until Ctrl-C."""
    from node.localnet import MANIFEST, generate, load_local_network

    configure_logging("console", "info")
    log = get_logger("localnet")
    if (folder / MANIFEST).exists():
        local = load_local_network(folder)
        log.info("reusing local network", dir=str(folder), nodes=len(local.nodes))
    else:
        local = generate(folder, nodes, base_port, network, datetime.now(UTC), os.urandom,
                         metrics_base_port=metrics_base_port)
        log.info("generated local network", dir=str(folder), genesis=str(local.genesis_path))
    stop = _stop_on_signals()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for node in local.nodes:
            logfile = (node.config_path.parent / "node.log").open("ab")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "node.cli", "node", "run", "--config",
                 str(node.config_path)], stdout=logfile, stderr=subprocess.STDOUT,
            ))
            print(f"  {node.role:9} {node.agency:18} grpc {node.address}  metrics"
                  f" http://{node.metrics_address}/metrics  log {node.config_path.parent}/node.log")
        print("client profiles (mTLS credentials, genesis, record key):")
        for agency in local.agencies:
            print(f"  {agency.name:18} {agency.client_profile}")
        print("Python: LedgerClient.from_profile(PATH); Ctrl-C stops the network.")
        observer = local.nodes[-1]
        print(f"explorer (read-only, from another terminal): shadowledger explorer --data-dir"
              f" {observer.config_path.parent / 'data'} --genesis {local.genesis_path}")
        _seed(local, stop)
        _watch(local.agencies[0].client_profile, procs, stop)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        print("network stopped; data kept in", folder)
    return 0


def _seed(local: LocalNetwork, stop: threading.Event, timeout: float = 60.0) -> None:
    """Demo data (agreements, then events under them), once the nodes answer."""
    from node.demo import seed_local_network

    agencies = [(a.name, a.client_profile) for a in local.agencies if a.role == "agency"]
    deadline = time.monotonic() + timeout
    while not stop.wait(1.0):
        try:
            for line in seed_local_network(agencies):
                print(f"demo data: {line}")
            return
        except LedgerError as exc:  # nodes still starting: try again shortly
            if time.monotonic() > deadline:
                print(f"demo data not added: {str(exc)[:200]}", file=sys.stderr)
                return


def _watch(profile: Path, procs: list[subprocess.Popen[bytes]], stop: threading.Event) -> None:
    """Print the network's status every few seconds; stop if a node dies."""
    from node.client import LedgerClient

    time.sleep(1.0)
    with LedgerClient.from_profile(profile) as client:
        while not stop.wait(5.0):
            dead = [p.args for p in procs if p.poll() is not None]
            if dead:
                print(f"a node exited ({dead[0]!r}); stopping the network", file=sys.stderr)
                return
            try:
                status = client.status()
                print(f"height {status.height}  records {status.tree_size}  peers"
                      f" {','.join(status.connected_peers)}  mempool {status.mempool_records}")
            except Exception as exc:  # status is informative only
                print(f"status unavailable: {str(exc)[:120]}")

"""A validator backed up under load, lost with its disk, restored, and caught up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

from node.backup import MANIFEST_FILE
from node.client import Ack
from tests.integration.cluster import Cluster, running_cluster, submit_records

HARDENED = """
import ctypes, sys
# PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN), Linux 6.3+: what systemd's
# MemoryDenyWriteExecute=yes enforces, set before anything else is imported.
hardened = ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) == 0
print("memory-deny-write-execute", "on" if hardened else "unavailable", flush=True)
from node.cli import main
sys.exit(main(sys.argv[1:]))
"""
VALIDATORS = ["tax-agency", "social-security", "health-insurance", "statistics-office"]
RESTORED = "statistics-office"


def _start_hardened(cluster: Cluster, agency: str) -> None:
    """Start ``agency``'s node with writable-executable memory refused, as the systemd
    unit does (deploy/systemd), so a library that needs it would fail here."""
    node = cluster.node(agency)
    log = (node.config_path.parent / "node.log").open("ab")
    cluster.procs[agency] = subprocess.Popen(
        [sys.executable, "-c", HARDENED, "node", "run", "--config", str(node.config_path)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, GRPC_VERBOSITY="ERROR"),
    )


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _manifest(backup: Path) -> dict[str, Any]:
    with tarfile.open(backup) as tar:
        member = tar.extractfile(MANIFEST_FILE)
        assert member is not None
        data: dict[str, Any] = json.loads(member.read())
    return data


def _load(cluster: Cluster, acks: list[Ack], stop: threading.Event) -> None:
    """Keep records flowing (batches of 20) until ``stop``; a failure ends the thread."""
    batch = 0
    while not stop.is_set():
        acks += submit_records(cluster, "health-insurance", 1000 + 20 * batch, 20)
        batch += 1


def test_a_validator_restored_from_an_online_backup_catches_up(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "net") as cluster:
        acks = submit_records(cluster, "tax-agency", 0, 30)
        data_dir = cluster.node(RESTORED).config_path.parent / "data"
        genesis = cluster.net.genesis_path
        under_load: list[Ack] = []
        stop = threading.Event()
        loader = threading.Thread(target=_load, args=(cluster, under_load, stop))
        loader.start()
        try:
            while len(under_load) < 40:  # the backup runs while blocks commit
                loader.join(timeout=0.2)
                assert loader.is_alive(), "load stopped early"
            done = _cli("node", "backup", "--data-dir", data_dir,
                        "--out", tmp_path / "node.tar", "--genesis", genesis)
            assert done.returncode == 0, done.stderr
        finally:
            stop.set()
            loader.join(timeout=120)
        backed_up = _manifest(tmp_path / "node.tar")["tree_size"]
        assert backed_up > 0
        acks += under_load + submit_records(cluster, "social-security", 0, 20)

        config = cluster.node(RESTORED).config_path
        assert _cli("node", "health", "--config", config).stdout.strip() == "SERVING"
        cluster.kill(RESTORED)  # the disk is lost
        down = _cli("node", "health", "--config", config, "--timeout", "1")
        assert down.returncode == 1 and "FAILED: node unreachable" in down.stderr
        shutil.rmtree(data_dir)
        acks += submit_records(cluster, "tax-agency", 100, 30)  # the others go on without it
        done = _cli("node", "restore", "--from", tmp_path / "node.tar",
                    "--data-dir", data_dir, "--genesis", genesis)
        assert done.returncode == 0, done.stderr
        assert "restored" in done.stdout

        _start_hardened(cluster, RESTORED)
        cluster.wait_ready([RESTORED])
        acks += submit_records(cluster, RESTORED, 0, 10)  # and it takes part again
        size = max(a.checkpoint.size for a in acks)
        root = cluster.wait_same_root([*VALIDATORS, "audit-office"], size, timeout=120)
        assert backed_up < size  # so the restored node had to catch up from its peers
        assert root == cluster.status(RESTORED)[2]
        with cluster.client("tax-agency", via=RESTORED) as client:  # verified reads
            found = {a.index: client.get_record(record_id=a.record_id).index for a in acks}
        assert all(index == found[index] for index in found)
        assert len(found) == len(acks) == len({a.record_id for a in acks})
        log = (config.parent / "node.log").read_text()
        kernel = tuple(int(x) for x in os.uname().release.split(".")[:2])
        assert "memory-deny-write-execute on" in log or kernel < (6, 3)

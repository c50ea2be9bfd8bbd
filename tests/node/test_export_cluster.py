"""Export from a running 4-node cluster (LMDB read-only readers beside the node process),
re-export after more records (incremental), and verify both exports as an auditor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from node.client import Ack
from tests.integration.cluster import running_cluster

EXE = [sys.executable, "-m", "node.cli"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=120)


def _verify(export: Path, genesis: Path) -> dict[str, object]:
    done = _run("audit", "verify-ledger", export, "--trust", genesis, "--json")
    assert done.returncode == 0, done.stderr
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


def test_export_a_running_node_and_extend_it(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "net") as cluster:
        def submit(first: int, count: int) -> int:
            with cluster.client("tax-agency") as client:
                acks = list(client.submit_many(
                    cluster.record("tax-agency", i) for i in range(first, first + count)))
            assert all(isinstance(a, Ack) for a in acks), acks
            return max(a.checkpoint.size for a in acks if isinstance(a, Ack))

        genesis = cluster.net.genesis_path
        data_dir = cluster.node("social-security").config_path.parent / "data"
        out = tmp_path / "export"
        size = submit(0, 40)
        cluster.wait_same_root(["tax-agency", "social-security"], size=size)
        done = _run("export", "--data-dir", data_dir, "--out", out)  # the node keeps running
        assert done.returncode == 0, done.stderr
        first = _verify(out, genesis)
        assert first["ok"] and 0 < int(str(first["tree_size"])) <= 40
        assert first["records_per_agency"] == {"tax-agency": first["tree_size"]}

        size = submit(40, 30)
        cluster.wait_same_root(["tax-agency", "social-security"], size=size)
        done = _run("export", "--data-dir", data_dir, "--out", out)
        assert done.returncode == 0, done.stderr
        assert f"extended from size {first['tree_size']}" in done.stdout
        second = _verify(out, genesis)
        assert second["ok"] and int(str(second["tree_size"])) > int(str(first["tree_size"]))
        checked = second["checked"]
        assert isinstance(checked, dict) and checked["certificates"] == second["height"]

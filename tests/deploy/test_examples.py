"""deploy/examples: every example loads as the node would load it, and the genesis spec
builds a genesis from material made by the runbook's own commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from node.config import load_client_profile, load_config
from tests.deploy.tools import DEPLOY, SHADOWLEDGER, run

EXAMPLES = DEPLOY / "examples"


def test_node_configs_load() -> None:
    validator = load_config(EXAMPLES / "node.toml", check_files=False)
    observer = load_config(EXAMPLES / "observer.toml", check_files=False)
    assert validator.is_validator and not observer.is_validator
    assert {p.name for p in validator.peers} | {validator.node.name} == (
        {p.name for p in observer.peers} | {observer.node.name})


def test_client_profile_loads() -> None:
    profile = load_client_profile(EXAMPLES / "client.toml", check_files=False)
    assert profile.agency == "tax-agency" and profile.record_key is not None


def test_genesis_spec_builds_from_runbook_material(tmp_path: Path) -> None:
    spec = json.loads((EXAMPLES / "genesis-spec.json").read_text())
    for agency in spec["agencies"]:
        name, folder = agency["name"], tmp_path / agency["name"]
        names = [f"node.{name}", f"client.{name}"]
        for tls_name in names:
            done = run(SHADOWLEDGER, "tls-identity", tls_name, "--out", folder)
            assert done.returncode == 0, done.stderr
        keys = [name, f"validator.{name}"] if agency.get("role") != "auditor" else []
        for key in keys:
            assert run(SHADOWLEDGER, "keygen", key, "--out", folder).returncode == 0
    shutil.copy(EXAMPLES / "genesis-spec.json", tmp_path / "spec.json")
    done = run(SHADOWLEDGER, "genesis", "--network", "ledger.example.gov/v1",
               "--agency-file", tmp_path / "spec.json", "--out", tmp_path / "genesis.json")
    assert done.returncode == 0, done.stderr
    assert "5 agencies, 4 validators (quorum 3)" in done.stdout

"""deploy/k8s: valid against the Kubernetes OpenAPI schemas (strict), lint-clean YAML,
and wired the way the runbook says (non-root, read-only root, one replica, probes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from node.config import NodeConfig
from tests.deploy.tools import DEPLOY, cli_accepts, run, tool

MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


def _documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def test_manifests_validate_strictly_against_kubernetes_schemas() -> None:
    validate = tool("kubernetes-validate", "pip install -e '.[dev]'")
    done = run(validate, "--strict", "--quiet", *MANIFESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_misspelt_field_fails_validation(tmp_path: Path) -> None:
    validate = tool("kubernetes-validate", "pip install -e '.[dev]'")
    bad = tmp_path / "bad.yaml"
    text = (DEPLOY / "k8s" / "tax-agency.yaml").read_text()
    bad.write_text(text.replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"))
    assert run(validate, "--strict", "--quiet", bad).returncode != 0


def test_deploy_yaml_is_lint_clean() -> None:
    yamllint = tool("yamllint", "pip install -e '.[dev]'")
    done = run(yamllint, "--strict", "-c", DEPLOY / ".yamllint.yaml", DEPLOY)
    assert done.returncode == 0, done.stdout


@pytest.fixture(scope="module")
def statefulset() -> dict[str, Any]:
    return _documents()["StatefulSet/shadowledger-tax-agency"]


def test_statefulset_is_one_non_root_read_only_validator(statefulset: dict[str, Any]) -> None:
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_probes_use_the_health_command(statefulset: dict[str, Any]) -> None:
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:3] == ["shadowledger", "node", "health"], probe
    assert cli_accepts("node", "health")


def _mounted_config(statefulset: dict[str, Any], tmp_path: Path) -> NodeConfig:
    from node.config import load_config

    text = _documents()["ConfigMap/shadowledger-tax-agency-config"]["data"]["node.toml"]
    (tmp_path / "node.toml").write_text(text)
    return load_config(tmp_path / "node.toml", check_files=False)


def test_the_configmap_is_a_valid_node_config_matching_the_mounts(
    statefulset: dict[str, Any], tmp_path: Path
) -> None:
    config = _mounted_config(statefulset, tmp_path)
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: Path(m["mountPath"]) for m in container["volumeMounts"]}
    assert config.node.data_dir.is_relative_to(mounts["data"])
    assert config.node.genesis.parent == mounts["genesis"]
    for key in (config.keys.tls_cert, config.keys.tls_key, config.keys.validator_key):
        assert key is not None and key.parent == mounts["keys"]
    port = int(config.node.listen.rpartition(":")[2])
    assert {p["containerPort"] for p in container["ports"]} >= {port}


def test_disruption_budget_and_network_policy_cover_the_node() -> None:
    docs = _documents()
    labels = docs["StatefulSet/shadowledger-tax-agency"]["spec"]["selector"]["matchLabels"]
    pdb = docs["PodDisruptionBudget/shadowledger-tax-agency"]["spec"]
    assert pdb["selector"]["matchLabels"] == labels and pdb["maxUnavailable"] == 0
    policy = docs["NetworkPolicy/shadowledger-tax-agency"]["spec"]
    assert policy["podSelector"]["matchLabels"] == labels
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}

"""`network init` / `localnet.generate`, and `shadowledger genesis` from a spec."""

from __future__ import annotations

import json
import random
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.genesis import Genesis, decode_box_key, encode_box_key
from node import localnet, tls
from node.config import (
    ConfigError,
    load_client_profile,
    load_config,
    read_pseudonym_key,
    read_signing_key,
)
from node.delivery import public_box_key, read_box_key
from node.localnet import LocalNetwork

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NETWORK = "test.shadow-ledger.example/v1"
EXE = [sys.executable, "-m", "node.cli"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=120)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> LocalNetwork:
    folder = tmp_path_factory.mktemp("localnet") / "net"
    return localnet.generate(folder, 4, 7100, NETWORK, NOW, seeded(1).randbytes)


def test_layout(net: LocalNetwork) -> None:
    assert [n.agency for n in net.validators] == list(localnet.NAMED_AGENCIES)
    assert [(n.agency, n.role) for n in net.nodes][-1] == ("audit-office", "observer")
    assert [n.address for n in net.nodes] == [f"127.0.0.1:{7100 + i}" for i in range(5)]
    assert [n.metrics_address for n in net.nodes] == [f"127.0.0.1:{9100 + i}" for i in range(5)]
    assert localnet.load_local_network(net.dir) == net


def test_genesis_pins_every_key_and_cert(net: LocalNetwork) -> None:
    genesis = Genesis.from_bytes(net.genesis_path.read_bytes())
    assert genesis.network == NETWORK and genesis.threshold == 3
    assert genesis.time_ms == int(NOW.timestamp() * 1000)
    assert [v.agency for v in genesis.validators] == list(localnet.NAMED_AGENCIES)
    audit_office = genesis.agency("audit-office")
    assert audit_office is not None and audit_office.role == "auditor"
    assert audit_office.record_keys == ()
    pins = tls.pins_from_genesis(genesis)
    assert len(pins) == 10
    for agency in net.agencies:
        keys = net.dir / agency.name / "keys"
        auditor = agency.role == "auditor"
        node_id = pins[tls.fingerprint((keys / "node.crt").read_bytes())]
        client_id = pins[tls.fingerprint((keys / "client.crt").read_bytes())]
        assert node_id == tls.Identity(agency.name, "auditor" if auditor else "node", "node")
        assert client_id == tls.Identity(agency.name, "auditor" if auditor else "client", "client")
        assert tls.dns_names((keys / "node.crt").read_bytes()) == [f"node.{agency.name}"]


def test_every_node_config_loads(net: LocalNetwork) -> None:
    genesis = Genesis.from_bytes(net.genesis_path.read_bytes())
    for node in net.nodes:
        config = load_config(node.config_path)
        assert config.node.name == node.agency and config.node.role == node.role
        assert config.node.listen == node.address
        assert config.metrics.listen == node.metrics_address
        assert config.node.genesis == net.genesis_path
        assert config.node.data_dir.is_dir()
        assert {p.address for p in config.peers} == {n.address for n in net.nodes} - {node.address}
        cert = config.keys.tls_cert.read_bytes()
        assert tls.fingerprint(cert) in tls.pins_from_genesis(genesis)
        if config.is_validator:
            assert config.keys.validator_key is not None
            key = read_signing_key(config.keys.validator_key)
            assert key.verifier in genesis.validator_keys
        else:
            assert config.keys.validator_key is None


def test_every_client_profile_loads(net: LocalNetwork) -> None:
    genesis = Genesis.from_bytes(net.genesis_path.read_bytes())
    for agency in net.agencies:
        profile = load_client_profile(agency.client_profile)
        node = next(n for n in net.nodes if n.agency == agency.name)
        assert profile.address == node.address
        assert profile.tls_server_name == f"node.{agency.name}"
        assert profile.genesis == net.genesis_path
        if agency.role == "auditor":
            assert profile.record_key is None and profile.pseudonym_key is None
            continue
        assert profile.record_key is not None and profile.pseudonym_key is not None
        record_key = read_signing_key(profile.record_key)
        entry = genesis.agency(agency.name)
        assert entry is not None and entry.record_keys == (record_key.verifier,)
        assert len(read_pseudonym_key(profile.pseudonym_key)) == 32
        assert profile.box_key is not None
        assert entry.box_keys == (public_box_key(read_box_key(profile.box_key)),)


def test_private_files_are_0600(net: LocalNetwork) -> None:
    secrets = [p for p in net.dir.rglob("*") if p.suffix in (".skey", ".key")]
    assert len(secrets) == 4 * 6 + 2  # 4 agencies: 2 skeys, 2 TLS keys, pseudonym, box key;
    # the auditor: 2 TLS keys
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for keys in net.dir.glob("*/keys"):
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700, keys
    public = [p for p in net.dir.rglob("*") if p.suffix in (".crt", ".vkey", ".json", ".toml")]
    assert all(b"PRIVATE" not in p.read_bytes() for p in public)


def test_generate_is_deterministic_in_its_random_source(tmp_path: Path) -> None:
    a = localnet.generate(tmp_path / "a", 1, 7200, NETWORK, NOW, seeded(7).randbytes)
    b = localnet.generate(tmp_path / "b", 1, 7200, NETWORK, NOW, seeded(7).randbytes)
    skey = Path("tax-agency/keys/tax-agency.skey")
    assert (a.dir / skey).read_bytes() == (b.dir / skey).read_bytes()


def test_more_than_four_agencies_get_numbered_names(tmp_path: Path) -> None:
    net = localnet.generate(tmp_path / "n", 7, 7300, NETWORK, NOW, seeded(2).randbytes)
    assert [n.agency for n in net.validators] == [f"agency-{i}" for i in range(1, 8)]
    assert Genesis.from_bytes(net.genesis_path.read_bytes()).threshold == 5


@pytest.mark.parametrize(
    ("nodes", "base_port", "words"),
    [(0, 7100, "at least 1"), (4, 65533, "no room"), (4, 9098, "overlap")],
)
def test_generate_refuses_bad_arguments(
    tmp_path: Path, nodes: int, base_port: int, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        localnet.generate(tmp_path / "x", nodes, base_port, NETWORK, NOW, seeded(0).randbytes)


def test_generate_refuses_a_non_empty_folder(net: LocalNetwork) -> None:
    with pytest.raises(ConfigError, match="not empty"):
        localnet.generate(net.dir, 4, 7100, NETWORK, NOW, seeded(0).randbytes)


# --- shadowledger genesis from a spec ------------------------------------------------------


def test_genesis_cli_round_trips_the_spec(net: LocalNetwork, tmp_path: Path) -> None:
    out = tmp_path / "genesis.json"
    done = _run("genesis", "--network", NETWORK, "--agency-file",
                net.dir / "genesis-spec.json", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "5 agencies, 4 validators (quorum 3)" in done.stdout
    built = Genesis.from_bytes(out.read_bytes()).to_json()
    original = Genesis.from_bytes(net.genesis_path.read_bytes()).to_json()
    built.pop("time_ms"), original.pop("time_ms")
    assert built == original
    again = _run("genesis", "--network", NETWORK, "--agency-file",
                 net.dir / "genesis-spec.json", "--out", out)
    assert again.returncode == 2 and "--force" in again.stderr


def test_spec_accepts_inline_material(net: LocalNetwork, tmp_path: Path) -> None:
    keys = net.dir / "tax-agency" / "keys"
    spec = {
        "format": localnet.SPEC_FORMAT,
        "agencies": [{
            "name": "tax-agency",
            "record_keys": [(keys / "tax-agency.vkey").read_text().strip()],
            "validators": [(keys / "validator.tax-agency.vkey").read_text().strip()],
            "node_certs": [(keys / "node.crt").read_text()],
        }],
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    genesis = localnet.genesis_from_spec(path, NETWORK, NOW)
    assert genesis.validators[0].agency == "tax-agency" and genesis.agencies[0].client_certs == ()


def _spec_with(net: LocalNetwork, **changes: object) -> Path:
    spec = json.loads((net.dir / "genesis-spec.json").read_text())
    spec["agencies"][0].update(changes)
    path = net.dir / f"spec-{len(list(net.dir.glob('spec-*')))}.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"node_certs": ["social-security/keys/node.crt"]}, "agencies[0].node_certs[0]",
         "SAN must include node.tax-agency"),
        ({"node_certs": ["nowhere.crt"]}, "agencies[0].node_certs[0]", "cannot read"),
        ({"client_certs": ["tax-agency/keys/tax-agency.vkey"]}, "agencies[0].client_certs[0]",
         "not a PEM"),
        ({"record_keys": ["social-security/keys/social-security.vkey"]}, "(genesis)",
         "is listed under tax-agency"),
        ({"validators": [{"vkey": "tax-agency/keys/validator.tax-agency.vkey", "power": 0}]},
         "agencies[0].validators[0].power", "positive"),
        ({"client_certs": ["social-security/keys/client.crt"]}, "(genesis)", "same certificate"),
        ({"colour": "blue"}, "agencies[0].colour", "unknown key"),
        ({"role": "regulator"}, "(genesis)", "unknown role"),
        ({"box_keys": ["tax-agency/keys/tax-agency.vkey"]}, "agencies[0].box_keys[0]",
         "not base64"),
    ],
)
def test_bad_spec_names_the_entry(
    net: LocalNetwork, change: dict[str, object], where: str, words: str
) -> None:
    path = _spec_with(net, **change)
    with pytest.raises(ConfigError) as caught:
        localnet.genesis_from_spec(path, NETWORK, NOW)
    assert f": {where}: " in str(caught.value) and words in str(caught.value), str(caught.value)


def test_spec_refuses_expired_certificates(net: LocalNetwork) -> None:
    later = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="expired on 2027-01-01"):
        localnet.genesis_from_spec(net.dir / "genesis-spec.json", NETWORK, later)


def test_network_init_and_tls_identity_cli(tmp_path: Path) -> None:
    done = _run("network", "init", "--nodes", "4", "--dir", tmp_path / "n", "--base-port", "7400")
    assert done.returncode == 0, done.stderr
    assert "observer  audit-office" in done.stdout
    assert load_config(tmp_path / "n" / "tax-agency" / "node.toml").node.listen.endswith(":7400")
    again = _run("network", "init", "--dir", tmp_path / "n")
    assert again.returncode == 2 and "not empty" in again.stderr
    made = _run("tls-identity", "node.new-agency", "--out", tmp_path / "t", "--days", "30")
    assert made.returncode == 0, made.stderr
    cert = (tmp_path / "t" / "node.new-agency.crt").read_bytes()
    tls.check_pinnable(cert, "new cert")
    assert stat.S_IMODE((tmp_path / "t" / "node.new-agency.key").stat().st_mode) == 0o600
    assert tls.fingerprint(cert).hex() in made.stdout


def test_keygen_box_writes_a_pair_for_the_genesis_spec(net: LocalNetwork, tmp_path: Path
                                                       ) -> None:
    made = _run("keygen", "new-agency", "--box", "--out", tmp_path)
    assert made.returncode == 0, made.stderr
    secret = tmp_path / "new-agency.boxkey"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public = (tmp_path / "new-agency.boxpub").read_text().strip()
    assert made.stdout.strip() == public
    assert encode_box_key(public_box_key(read_box_key(secret))) == public
    again = _run("keygen", "new-agency", "--box", "--out", tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    spec = _spec_with(net, box_keys=[public])  # inline, instead of a file
    genesis = localnet.genesis_from_spec(spec, NETWORK, NOW)
    assert genesis.agencies[0].box_keys == (decode_box_key(public),)

"""node.toml and client.toml: defaults, path resolution, and errors that name the key."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from node.config import (
    ClientProfile,
    ConfigError,
    ConsensusSection,
    DeliverySection,
    KeysSection,
    LimitsSection,
    LogSection,
    MempoolSection,
    MetricsSection,
    NodeConfig,
    NodeSection,
    Peer,
    StorageSection,
    load_client_profile,
    load_config,
    read_pseudonym_key,
    read_signing_key,
)
from node.logging_setup import configure_logging, get_logger

MINIMAL = """
[node]
name = "tax-agency"

[keys]
tls_cert = "keys/node.crt"
tls_key = "keys/node.key"
validator_key = "keys/validator.skey"
"""


def write(folder: Path, text: str, name: str = "node.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_minimal_config_takes_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), check_files=False)
    assert config.node.role == "validator" and config.is_validator
    assert config.node.listen == "127.0.0.1:7001"
    assert config.node.data_dir == tmp_path / "data"
    assert config.node.genesis == tmp_path / "genesis.json"
    assert config.keys.tls_cert == tmp_path / "keys" / "node.crt"
    assert config.consensus == ConsensusSection()
    assert config.consensus.timeout_propose_ms == 1000
    assert config.consensus.max_block_bytes == 4 * 1024 * 1024
    assert not config.consensus.create_empty_blocks
    assert (config.mempool.max_records, config.mempool.max_bytes) == (100_000, 268_435_456)
    assert config.limits == LimitsSection(4_194_304, 65_536)
    assert config.storage.map_size == 68_719_476_736
    assert config.metrics.listen == "127.0.0.1:9101" and config.metrics.enabled
    assert (config.log.format, config.log.level) == ("json", "info")
    assert config.peers == ()
    assert config.server_name == "node.tax-agency"
    assert config.ledger_limits().max_block_records == 2000


def test_full_config(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "tax-agency"', 'name = "tax-agency"\ndata_dir = "/var/lib/sl"')
    text += """
[[peers]]
name = "social-security"
address = "10.0.0.2:7001"

[[peers]]
name = "health-insurance"
address = "[::1]:7002"

[consensus]
timeout_propose_ms = 3000
timeout_delta_ms = 0
create_empty_blocks = true

[metrics]
listen = ""

[log]
format = "console"
level = "debug"
"""
    config = load_config(write(tmp_path, text), check_files=False)
    assert config.node.data_dir == Path("/var/lib/sl")
    names = [p.server_name for p in config.peers]
    assert names == ["node.social-security", "node.health-insurance"]
    assert config.consensus.timeout_propose_ms == 3000 and config.consensus.create_empty_blocks
    assert config.consensus.timeout_delta_ms == 0
    assert not config.metrics.enabled
    assert config.log.format == "console"


def test_observer_needs_no_validator_key(tmp_path: Path) -> None:
    text = MINIMAL.replace('validator_key = "keys/validator.skey"', "")
    text = text.replace('name = "tax-agency"', 'name = "audit-office"\nrole = "observer"')
    assert load_config(write(tmp_path, text), check_files=False).keys.validator_key is None


def _edit(old: str, new: str) -> str:
    """MINIMAL with ``old`` replaced by ``new``; old "" appends, old "^" prepends."""
    if old == "^":
        return new + MINIMAL
    return MINIMAL + new if not old else MINIMAL.replace(old, new, 1)


BAD = [
    # (edit to MINIMAL, key the error must name, words it must contain)
    (("[node]\n", "[node]\nrole = \"leader\"\n"), "node.role", "validator, observer"),
    (("[node]\n", "[node]\nlisten = \"7001\"\n"), "node.listen", "host:port"),
    (("[node]\n", "[node]\nlisten = \"127.0.0.1:70000\"\n"), "node.listen", "host:port"),
    (("[node]\n", "[node]\nlistne = \"127.0.0.1:1\"\n"), "node.listne", "unknown key"),
    (('name = "tax-agency"\n', ""), "node.name", "required"),
    (('name = "tax-agency"', 'name = ""'), "node.name", "empty"),
    (('name = "tax-agency"', "name = 7"), "node.name", "string"),
    (('tls_key = "keys/node.key"\n', ""), "keys.tls_key", "required"),
    (('validator_key = "keys/validator.skey"\n', ""), "keys.validator_key", "required when"),
    (("", "[consensus]\ntimeout_propose_ms = 0\n"), "consensus.timeout_propose_ms", "at least 1"),
    (("", "[consensus]\ntimeout_prevote_ms = \"500\"\n"), "consensus.timeout_prevote_ms",
     "integer"),
    (("", "[consensus]\ntimeout_delta_ms = -1\n"), "consensus.timeout_delta_ms", "at least 0"),
    (("", "[consensus]\nmax_block_records = true\n"), "consensus.max_block_records", "integer"),
    (("", "[consensus]\ncreate_empty_blocks = 1\n"), "consensus.create_empty_blocks",
     "true or false"),
    (("", "[consensus]\nmax_block_bytes = 8388608\n"), "consensus.max_block_bytes",
     "exceeds limits.max_message_bytes"),
    (("", "[mempool]\nmax_bytes = 1000\n"), "mempool.max_bytes", "smaller than"),
    (("", "[limits]\nmax_record_bytes = 8388608\n"), "limits.max_message_bytes", "smaller than"),
    (("", "[storage]\nmap_size = 4096\n"), "storage.map_size", "at least"),
    (("", "[metrics]\nlisten = \"nowhere\"\n"), "metrics.listen", "host:port"),
    (("", "[log]\nformat = \"xml\"\n"), "log.format", "json, console"),
    (("", "[log]\nlevel = \"loud\"\n"), "log.level", "debug, info"),
    (("", "[logging]\nlevel = \"info\"\n"), "logging", "unknown key"),
    (("", "[[peers]]\nname = \"x\"\n"), "peers[0].address", "required"),
    (("", "[[peers]]\nname = \"x\"\naddress = \"h:0\"\n"), "peers[0].address", "host:port"),
    (("", "[[peers]]\nname = \"tax-agency\"\naddress = \"h:1\"\n"), "peers[0].name",
     "this node itself"),
    (("", '[[peers]]\nname = "a"\naddress = "h:1"\n' * 2), "peers[0].name", "listed twice"),
    (("^", "peers = 3\n"), "peers", "array of tables"),
    (("", "[delivery]\ndir = \"data\"\n"), "delivery.dir", "apart from node.data_dir"),
    (("", "[delivery]\ndir = \"data/deliveries\"\n"), "delivery.dir", "apart from"),
    (("", "[delivery]\nmax_sealed_bytes = 10\n"), "delivery.max_sealed_bytes", "at least"),
]


@pytest.mark.parametrize(("edit", "key", "words"), BAD)
def test_bad_value_names_the_key(
    tmp_path: Path, edit: tuple[str, str], key: str, words: str
) -> None:
    path = write(tmp_path, _edit(*edit))
    with pytest.raises(ConfigError) as caught:
        load_config(path, check_files=False)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message


def test_missing_node_section_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="node: section is missing"):
        load_config(write(tmp_path, "[log]\n"), check_files=False)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[node\n"), check_files=False)


def test_missing_files_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    (tmp_path / "genesis.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"keys\.tls_cert: file .*node\.crt does not exist"):
        load_config(path)


SECTION_CLASSES = (
    NodeSection, KeysSection, Peer, ConsensusSection, MempoolSection, LimitsSection,
    StorageSection, DeliverySection, MetricsSection, LogSection, ClientProfile,
)


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "CONFIG.md").read_text()
    sections = {
        f.name: f.type for f in dataclasses.fields(NodeConfig) if f.name not in ("source",)
    }
    for name in sections:
        assert f"[{name}]" in doc or f"[[{name}]]" in doc, name
    for cls in SECTION_CLASSES:
        for f in dataclasses.fields(cls):
            if f.name != "source":
                assert f"`{f.name}`" in doc, f.name


CLIENT = """
[client]
agency = "tax-agency"
address = "127.0.0.1:7100"
genesis = "../genesis.json"
tls_cert = "keys/client.crt"
tls_key = "keys/client.key"
record_key = "keys/tax-agency.skey"
pseudonym_key = "keys/pseudonym.key"
"""


def test_client_profile(tmp_path: Path) -> None:
    folder = tmp_path / "tax-agency"
    folder.mkdir()
    profile = load_client_profile(write(folder, CLIENT, "client.toml"), check_files=False)
    assert profile.genesis == tmp_path / "genesis.json"
    assert profile.tls_server_name == "node.tax-agency"
    assert profile.record_key == folder / "keys" / "tax-agency.skey"
    assert profile.max_message_bytes == 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (('address = "127.0.0.1:7100"', 'address = "localhost"'), "client.address"),
        (('agency = "tax-agency"\n', ""), "client.agency"),
        (("[client]\n", "[client]\nmax_message_bytes = 10\n"), "client.max_message_bytes"),
        (("[client]\n", "[client]\nnode = \"x\"\n"), "client.node"),
    ],
)
def test_bad_client_profile_names_the_key(
    tmp_path: Path, edit: tuple[str, str], key: str
) -> None:
    path = write(tmp_path, CLIENT.replace(*edit), "client.toml")
    with pytest.raises(ConfigError, match=f": {key}: "):
        load_client_profile(path, check_files=False)


def test_client_profile_missing_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, CLIENT, "client.toml")
    with pytest.raises(ConfigError, match=r"client\.genesis: file"):
        load_client_profile(path)


def test_key_file_readers(tmp_path: Path) -> None:
    (tmp_path / "p.key").write_bytes(b"x" * 31)
    with pytest.raises(ConfigError, match="32 raw bytes"):
        read_pseudonym_key(tmp_path / "p.key")
    (tmp_path / "v.skey").write_text("not a key\n")
    with pytest.raises(ConfigError, match="not a signer key"):
        read_signing_key(tmp_path / "v.skey")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logging_routes_structlog_and_stdlib(fmt: str) -> None:
    out = io.StringIO()
    configure_logging(fmt, "info", out)
    get_logger("node.test").info("block committed", height=3)
    get_logger("node.test").debug("not shown")
    logging.getLogger("some.library").warning("from %s", "stdlib")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    if fmt == "json":
        first, second = (json.loads(line) for line in lines)
        assert first["event"] == "block committed" and first["height"] == 3
        assert first["level"] == "info" and first["logger"] == "node.test"
        assert second["event"] == "from stdlib" and second["level"] == "warning"
    else:
        assert "block committed" in lines[0] and "height=3" in lines[0]
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "info", out)

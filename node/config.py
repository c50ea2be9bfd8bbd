"""Node configuration (``node.toml``) and API client profiles (``client.toml``).

Both are TOML (read with ``tomllib``) mapped one-to-one onto frozen dataclasses: the
TOML key ``consensus.timeout_propose_ms`` is ``config.consensus.timeout_propose_ms``.
Every setting's default is written once, on its dataclass field; docs/CONFIG.md lists
them all. Unknown keys are refused (a typo must not silently fall back to a default),
and every error names the file and the offending key. Relative paths are resolved
against the folder of the file that names them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ledger.errors import FormatError, LedgerError
from ledger.keys import SigningKey
from ledger.limits import Limits

T = TypeVar("T")
MIB = 1024 * 1024
PSEUDONYM_KEY_BYTES = 32
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(LedgerError):
    """A node config or client profile is invalid; the message names the file and key."""


def _setting(
    default: T, *, minimum: int | None = None, choices: tuple[str, ...] = ()
) -> T:
    """A field with its default and the bounds ``load_config`` checks."""
    meta = {"minimum": minimum, "choices": choices}
    return field(default=default, metadata=meta)


# --- node.toml -------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSection:
    """[node]: who this node is and where it keeps its state."""

    name: str
    """The agency name in the genesis; the node's TLS name is ``node.<name>``."""
    role: Literal["validator", "observer"] = _setting(
        "validator", choices=("validator", "observer")
    )
    data_dir: Path = Path("data")
    genesis: Path = Path("genesis.json")
    listen: str = "127.0.0.1:7001"
    clock_offset_ms: int = 0
    """Added to the wall clock this node stamps blocks with (fault tests: clock skew)."""


@dataclass(frozen=True)
class KeysSection:
    """[keys]: the node's secrets (files, mode 0600)."""

    tls_cert: Path
    tls_key: Path
    validator_key: Path | None = None
    """C2SP skey file; required when ``node.role = "validator"``. The key need not be in
    the validator set yet: the node follows consensus without voting until governance
    adds it (docs/OPERATIONS.md, adding a validator)."""
    next_validator_key: Path | None = None
    """During a validator-key rotation: the key governance rotates this node to. At each
    height the node signs with whichever of its two keys is in that height's set."""


@dataclass(frozen=True)
class Peer:
    """[[peers]]: another node; it must present the pinned cert with SAN ``node.<name>``."""

    name: str
    address: str

    @property
    def server_name(self) -> str:
        return f"node.{self.name}"


@dataclass(frozen=True)
class WitnessEndpoint:
    """[[witnesses]]: a C2SP tlog-witness this node submits its final checkpoints to."""

    url: str
    """The witness's submission prefix (``http://host:port``); ``/add-checkpoint`` is added."""
    vkey: str
    """The witness's cosignature vkey (type 0x04); other lines in its answers are ignored."""


@dataclass(frozen=True)
class ConsensusSection:
    """[consensus]: Tendermint timeouts (grow by ``timeout_delta_ms`` per round) and blocks."""

    timeout_propose_ms: int = _setting(1000, minimum=1)
    timeout_prevote_ms: int = _setting(500, minimum=1)
    timeout_precommit_ms: int = _setting(500, minimum=1)
    timeout_delta_ms: int = _setting(500, minimum=0)
    max_block_records: int = _setting(2000, minimum=1)
    max_block_bytes: int = _setting(4 * MIB, minimum=1)
    create_empty_blocks: bool = False
    state_sync_gap: int = _setting(100, minimum=1)
    max_block_time_ahead_ms: int = _setting(5000, minimum=0)
    """A proposal whose block time is further ahead of this validator's clock is refused
    (the sharing policy is checked at the block time, which the proposer chooses)."""


@dataclass(frozen=True)
class MempoolSection:
    """[mempool]: records waiting for a block; beyond either bound submits are refused."""

    max_records: int = _setting(100_000, minimum=1)
    max_bytes: int = _setting(256 * MIB, minimum=1)


@dataclass(frozen=True)
class LimitsSection:
    """[limits]: bounds on untrusted input, checked before parsing."""

    max_message_bytes: int = _setting(4 * MIB, minimum=1024)
    max_record_bytes: int = _setting(64 * 1024, minimum=1)


@dataclass(frozen=True)
class StorageSection:
    """[storage]: the LMDB environment (map_size is the most it may ever grow to)."""

    map_size: int = _setting(64 * 1024 * MIB, minimum=MIB)


@dataclass(frozen=True)
class DeliverySection:
    """[delivery]: the off-ledger store of sealed payloads for this node's agency."""

    dir: Path = Path("deliveries")
    """Its own LMDB environment, apart from the ledger's: erasable (docs/PRIVACY.md)."""
    max_sealed_bytes: int = _setting(MIB, minimum=1024)
    map_size: int = _setting(1024 * MIB, minimum=MIB)


@dataclass(frozen=True)
class MetricsSection:
    """[metrics]: Prometheus text endpoint; ``listen = ""`` turns it off."""

    listen: str = "127.0.0.1:9101"

    @property
    def enabled(self) -> bool:
        return bool(self.listen)


@dataclass(frozen=True)
class ExplorerSection:
    """[explorer]: the read-only web explorer for auditors (plain HTTP: keep it private)."""

    enabled: bool = False
    listen: str = "127.0.0.1:8101"
    max_concurrent: int = _setting(16, minimum=1)
    """Requests served at once; beyond that the explorer answers 503 at once."""


@dataclass(frozen=True)
class LogSection:
    """[log]: structured logs on stderr."""

    format: Literal["json", "console"] = _setting("json", choices=("json", "console"))
    level: str = _setting("info", choices=LOG_LEVELS)


@dataclass(frozen=True)
class NodeConfig:
    node: NodeSection
    keys: KeysSection
    peers: tuple[Peer, ...] = ()
    witnesses: tuple[WitnessEndpoint, ...] = ()
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    storage: StorageSection = field(default_factory=StorageSection)
    delivery: DeliverySection = field(default_factory=DeliverySection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    explorer: ExplorerSection = field(default_factory=ExplorerSection)
    log: LogSection = field(default_factory=LogSection)
    source: Path | None = None
    """The file this was loaded from, if any."""

    @property
    def is_validator(self) -> bool:
        return self.node.role == "validator"

    @property
    def server_name(self) -> str:
        """This node's TLS name: the SAN its certificate must carry."""
        return f"node.{self.node.name}"

    def ledger_limits(self) -> Limits:
        """The ledger core's input bounds, with this node's record and block sizes."""
        return Limits(
            max_record_bytes=self.limits.max_record_bytes,
            max_block_records=self.consensus.max_block_records,
        )


_SECTIONS: dict[str, type[Any]] = {
    "node": NodeSection,
    "keys": KeysSection,
    "consensus": ConsensusSection,
    "mempool": MempoolSection,
    "limits": LimitsSection,
    "storage": StorageSection,
    "delivery": DeliverySection,
    "metrics": MetricsSection,
    "explorer": ExplorerSection,
    "log": LogSection,
}


def load_config(path: str | Path, *, check_files: bool = True) -> NodeConfig:
    """Read and check ``node.toml``; ConfigError naming the key if anything is wrong.

    With ``check_files`` the genesis and key files must exist (the data dir need not).
    """
    path = Path(path)
    doc = _read_toml(path)
    reader = _Reader(path)
    reader.check_keys(doc, "", (*_SECTIONS, "peers", "witnesses"))
    if "node" not in doc:
        raise reader.error("node", "section is missing (it needs at least name = ...)")
    parts = {name: reader.section(cls, doc.get(name, {}), name) for name, cls in _SECTIONS.items()}
    peers = reader.peers(doc.get("peers", []))
    witnesses = reader.witnesses(doc.get("witnesses", []))
    config = NodeConfig(**parts, peers=peers, witnesses=witnesses, source=path)
    _check_node(config, reader)
    if check_files:
        _check_node_files(config, reader)
    return config


def _check_node(config: NodeConfig, reader: _Reader) -> None:
    reader.address("node.listen", config.node.listen)
    if config.metrics.enabled:
        reader.address("metrics.listen", config.metrics.listen)
    if config.explorer.enabled:
        reader.address("explorer.listen", config.explorer.listen)
    if config.is_validator and config.keys.validator_key is None:
        raise reader.error("keys.validator_key", 'is required when node.role = "validator"')
    names = [p.name for p in config.peers]
    for i, peer in enumerate(config.peers):
        where = f"peers[{i}]"
        reader.address(f"{where}.address", peer.address, allow_port_zero=False)
        if peer.name == config.node.name:
            raise reader.error(f"{where}.name", f"{peer.name!r} is this node itself")
        if names.count(peer.name) > 1:
            raise reader.error(f"{where}.name", f"{peer.name!r} is listed twice")
    data, deliveries = config.node.data_dir, config.delivery.dir
    if deliveries == data or data in deliveries.parents or deliveries in data.parents:
        raise reader.error("delivery.dir", f"{deliveries} must be apart from node.data_dir "
                           f"{data}: the erasable store is never part of the ledger's")
    _check_sizes(config, reader)


def _check_sizes(config: NodeConfig, reader: _Reader) -> None:
    record = config.limits.max_record_bytes
    bounds = (
        ("limits.max_message_bytes", config.limits.max_message_bytes),
        ("consensus.max_block_bytes", config.consensus.max_block_bytes),
        ("mempool.max_bytes", config.mempool.max_bytes),
    )
    for key, value in bounds:
        if value < record:
            raise reader.error(key, f"{value} is smaller than limits.max_record_bytes ({record})")
    block, message = config.consensus.max_block_bytes, config.limits.max_message_bytes
    if block > message:
        raise reader.error(
            "consensus.max_block_bytes",
            f"{block} exceeds limits.max_message_bytes ({message}): a block must fit a message",
        )


def _check_node_files(config: NodeConfig, reader: _Reader) -> None:
    files = {
        "node.genesis": config.node.genesis,
        "keys.tls_cert": config.keys.tls_cert,
        "keys.tls_key": config.keys.tls_key,
        "keys.validator_key": config.keys.validator_key,
        "keys.next_validator_key": config.keys.next_validator_key,
    }
    for key, file in files.items():
        if file is not None and not file.is_file():
            raise reader.error(key, f"file {file} does not exist")


# --- client.toml -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClientProfile:
    """[client]: everything an API client needs to reach its agency's node."""

    agency: str
    address: str
    """host:port of the node to call (normally the agency's own)."""
    genesis: Path
    tls_cert: Path
    tls_key: Path
    server_name: str = ""
    """TLS name the node must present; defaults to ``node.<agency>``."""
    record_key: Path | None = None
    """C2SP skey the agency signs records with (auditors have none)."""
    pseudonym_key: Path | None = None
    """32-byte HMAC key for subject pseudonyms (auditors have none)."""
    box_key: Path | None = None
    """32-byte X25519 secret key that opens payloads sealed to the agency."""
    max_message_bytes: int = _setting(4 * MIB, minimum=1024)
    witness_quorum: int = _setting(0, minimum=0)
    """Trust only checkpoints cosigned by this many genesis witnesses (docs/WITNESS.md)."""
    source: Path | None = None

    @property
    def tls_server_name(self) -> str:
        return self.server_name or f"node.{self.agency}"


def load_client_profile(path: str | Path, *, check_files: bool = True) -> ClientProfile:
    """Read and check ``client.toml``; ConfigError naming the key if anything is wrong."""
    path = Path(path)
    doc = _read_toml(path)
    reader = _Reader(path)
    reader.check_keys(doc, "", ("client",))
    if "client" not in doc:
        raise reader.error("client", "section is missing")
    fields = reader.fields(ClientProfile, doc["client"], "client", skip=("source",))
    profile = ClientProfile(**fields, source=path)
    reader.address("client.address", profile.address, allow_port_zero=False)
    if check_files:
        for key in ("genesis", "tls_cert", "tls_key", "record_key", "pseudonym_key",
                    "box_key"):
            file = getattr(profile, key)
            if file is not None and not file.is_file():
                raise reader.error(f"client.{key}", f"file {file} does not exist")
    return profile


# --- reading key files -----------------------------------------------------------------


def read_signing_key(path: Path) -> SigningKey:
    """A C2SP skey file (``shadowledger keygen`` output)."""
    try:
        return SigningKey.from_skey(path.read_text(encoding="utf-8").strip())
    except (FormatError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a signer key file ({exc})") from exc


def read_pseudonym_key(path: Path) -> bytes:
    """The agency's 32-byte pseudonym key (raw bytes)."""
    key = path.read_bytes()
    if len(key) != PSEUDONYM_KEY_BYTES:
        raise ConfigError(
            f"{path}: pseudonym key must be {PSEUDONYM_KEY_BYTES} raw bytes, found {len(key)}"
        )
    return key


# --- the reader ------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


class _Reader:
    """Checks TOML values against dataclass fields; every error names file and key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.resolve().parent

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    def resolve(self, raw: str) -> Path:
        """Relative to the file's folder; ``..`` collapsed so errors show a clean path."""
        return Path(os.path.normpath(self.base / Path(raw).expanduser()))

    def check_keys(self, table: object, prefix: str, known: typing.Iterable[str]) -> None:
        if not isinstance(table, dict):
            raise self.error(prefix.rstrip(".") or "(top level)", "must be a table")
        allowed = sorted(known)
        for key in table:
            if key not in allowed:
                raise self.error(f"{prefix}{key}", f"unknown key (known: {', '.join(allowed)})")

    def section(self, cls: type[T], table: object, name: str) -> T:
        return cls(**self.fields(cls, table, name))

    def fields(
        self, cls: type[Any], table: object, name: str, skip: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        specs = [f for f in dataclasses.fields(cls) if f.name not in skip]
        self.check_keys(table, f"{name}.", (f.name for f in specs))
        assert isinstance(table, dict)
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for spec in specs:
            key = f"{name}.{spec.name}"
            if spec.name in table:
                values[spec.name] = self.value(key, table[spec.name], hints[spec.name], spec)
            elif _is_required(spec):
                raise self.error(key, "is required")
            elif hints[spec.name] in (Path, Path | None) and spec.default is not None:
                values[spec.name] = self.resolve(str(spec.default))
        return values

    def value(self, key: str, raw: object, hint: object, spec: dataclasses.Field[Any]) -> Any:
        if hint is bool:
            if not isinstance(raw, bool):
                raise self.error(key, f"must be true or false, got {raw!r}")
            return raw
        if hint is int:
            return self.integer(key, raw, spec.metadata.get("minimum"))
        if not isinstance(raw, str):
            raise self.error(key, f"must be a string, got {raw!r}")
        if hint in (Path, Path | None):
            if not raw:
                raise self.error(key, "must not be empty")
            return self.resolve(raw)
        choices = spec.metadata.get("choices") or ()
        if choices and raw not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {raw!r}")
        if _is_required(spec) and not raw:
            raise self.error(key, "must not be empty")
        return raw

    def integer(self, key: str, raw: object, minimum: int | None) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise self.error(key, f"must be an integer, got {raw!r}")
        if minimum is not None and raw < minimum:
            raise self.error(key, f"must be at least {minimum}, got {raw}")
        return raw

    def peers(self, raw: object) -> tuple[Peer, ...]:
        if not isinstance(raw, list):
            raise self.error("peers", "must be an array of tables ([[peers]])")
        return tuple(self.section(Peer, item, f"peers[{i}]") for i, item in enumerate(raw))

    def witnesses(self, raw: object) -> tuple[WitnessEndpoint, ...]:
        if not isinstance(raw, list):
            raise self.error("witnesses", "must be an array of tables ([[witnesses]])")
        found = tuple(self.section(WitnessEndpoint, item, f"witnesses[{i}]")
                      for i, item in enumerate(raw))
        for i, witness in enumerate(found):
            _check_witness(self, f"witnesses[{i}]", witness)
        return found

    def address(self, key: str, value: str, *, allow_port_zero: bool = True) -> None:
        """``host:port`` (IPv6 as ``[::1]:port``), port 1..65535 (0 = any, for listeners)."""
        host, sep, port = value.rpartition(":")
        lowest = 0 if allow_port_zero else 1
        if not sep or not host or not port.isdigit() or not lowest <= int(port) <= 65535:
            raise self.error(key, f"{value!r} is not host:port (e.g. 127.0.0.1:7001)")


def _check_witness(reader: _Reader, where: str, witness: WitnessEndpoint) -> None:
    from urllib.parse import urlsplit

    from ledger.keys import ALG_COSIGNATURE_V1, VerifierKey

    url = urlsplit(witness.url)
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise reader.error(f"{where}.url", f"{witness.url!r} is not an http(s)://host:port URL")
    try:
        key = VerifierKey.from_vkey(witness.vkey)
    except FormatError as exc:
        raise reader.error(f"{where}.vkey", str(exc)) from exc
    if key.alg != ALG_COSIGNATURE_V1:
        raise reader.error(f"{where}.vkey", "must be a witness cosignature key (type 0x04)")


def _is_required(spec: dataclasses.Field[Any]) -> bool:
    return (
        spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
    )

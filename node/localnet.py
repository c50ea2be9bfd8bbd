"""Network setup tooling: a complete local test network, and a genesis from public material.

``generate`` writes, under one folder, everything a local network of N validator
agencies plus one auditor ("audit-office", with an observer node) needs:

    DIR/genesis.json            the genesis pinning every key and certificate
    DIR/genesis-spec.json       the spec it was built from (public material only)
    DIR/localnet.json           manifest: nodes (config, address, role), client profiles
    DIR/<agency>/node.toml      node config (peers = every other node)
    DIR/<agency>/client.toml    API client profile
    DIR/<agency>/keys/          <agency>.skey/.vkey (record key), validator.<agency>.skey/.vkey,
                                node.crt/.key, client.crt/.key, pseudonym.key,
                                box.key/.pub (X25519, off-ledger delivery)
    DIR/<agency>/data/          the node's LMDB store (created empty)

Private key files are created with mode 0600, never overwritten. ``genesis_from_spec``
builds a genesis from a spec file listing each agency's public keys and certificates:
the way operators of real agencies set up a network, exchanging public material only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.errors import FormatError
from ledger.genesis import Agency, Genesis, Validator, decode_box_key, encode_box_key
from ledger.keys import SigningKey, VerifierKey
from node.config import ConfigError
from node.tls import (
    check_pinnable,
    client_name,
    dns_names,
    generate_identity,
    load_certificate,
    node_name,
    pins_from_genesis,
)

DEFAULT_NETWORK = "local.shadow-ledger.example/v1"
NAMED_AGENCIES = ("tax-agency", "social-security", "health-insurance", "statistics-office")
AUDITOR = "audit-office"
MANIFEST = "localnet.json"
MANIFEST_FORMAT = "shadowledger/localnet/v1"
SPEC_FORMAT = "shadowledger/genesis-spec/v1"
MAX_SPEC_BYTES = 1 << 20
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LocalNode:
    agency: str
    role: str
    """"validator" or "observer"."""
    config_path: Path
    address: str
    metrics_address: str


@dataclass(frozen=True)
class LocalAgency:
    name: str
    role: str
    """"agency" or "auditor" (genesis role)."""
    client_profile: Path


@dataclass(frozen=True)
class LocalNetwork:
    dir: Path
    network: str
    genesis_path: Path
    nodes: tuple[LocalNode, ...]
    agencies: tuple[LocalAgency, ...]

    @property
    def validators(self) -> tuple[LocalNode, ...]:
        return tuple(n for n in self.nodes if n.role == "validator")


@dataclass(frozen=True)
class _Member:
    """One agency being generated: its name, index (port offset) and key material."""

    name: str
    index: int
    auditor: bool
    record_key: SigningKey | None
    validator_key: SigningKey | None
    node_cert: bytes
    client_cert: bytes
    box_public: bytes = b""

    @property
    def folder(self) -> str:
        return self.name


def agency_names(count: int) -> list[str]:
    """Readable names for up to four agencies, ``agency-1``.. beyond that."""
    if count <= len(NAMED_AGENCIES):
        return list(NAMED_AGENCIES[:count])
    return [f"agency-{i}" for i in range(1, count + 1)]


def generate(
    dir: Path,
    nodes: int,
    base_port: int,
    network: str,
    now: datetime,
    random_bytes: Callable[[int], bytes],
    *,
    metrics_base_port: int = 9100,
    cert_days: int = 365,
) -> LocalNetwork:
    """Write a local network of ``nodes`` validators plus the auditor's observer node.

    Node i (validators first, the observer last) listens on ``base_port + i`` and serves
    metrics on ``metrics_base_port + i``, all on 127.0.0.1.
    """
    _check_generate_args(dir, nodes, base_port, metrics_base_port)
    dir.mkdir(parents=True, exist_ok=True)
    names = [*agency_names(nodes), AUDITOR]
    members = [
        _make_member(dir, name, i, name == AUDITOR, now, cert_days, random_bytes)
        for i, name in enumerate(names)
    ]
    genesis = _genesis(members, network, now)
    (dir / "genesis.json").write_bytes(genesis.to_bytes())
    _write_json(dir / "genesis-spec.json", _spec(members))
    for m in members:
        _write_node_config(dir, m, members, base_port, metrics_base_port)
        _write_client_profile(dir, m, base_port)
    local = _local_network(dir, network, members, base_port, metrics_base_port)
    _write_json(dir / MANIFEST, _manifest(local))
    return local


def _check_generate_args(dir: Path, nodes: int, base_port: int, metrics_base_port: int) -> None:
    if nodes < 1:
        raise ConfigError(f"--nodes must be at least 1 (4 tolerate one fault), got {nodes}")
    for what, port in (("--base-port", base_port), ("--metrics-base-port", metrics_base_port)):
        if not 1 <= port <= 65535 - nodes:
            raise ConfigError(f"{what} {port} leaves no room for {nodes + 1} ports")
    if abs(base_port - metrics_base_port) <= nodes:
        raise ConfigError("--base-port and --metrics-base-port ranges overlap")
    if dir.exists() and any(dir.iterdir()):
        raise ConfigError(f"{dir} is not empty; choose a new folder or remove it first")


def _make_member(
    dir: Path,
    name: str,
    index: int,
    auditor: bool,
    now: datetime,
    cert_days: int,
    random_bytes: Callable[[int], bytes],
) -> _Member:
    keys = dir / name / "keys"
    keys.mkdir(parents=True, mode=0o700)
    (dir / name / "data").mkdir(mode=0o700)
    record_key = validator_key = None
    if not auditor:  # an auditor reads everything and signs no records, votes on nothing
        record_key = SigningKey.generate(name, random_bytes)
        validator_key = SigningKey.generate(f"validator.{name}", random_bytes)
        for key in (record_key, validator_key):
            write_secret(keys / f"{key.name}.skey", (key.to_skey() + "\n").encode())
            (keys / f"{key.name}.vkey").write_text(key.verifier.to_vkey() + "\n")
        write_secret(keys / "pseudonym.key", random_bytes(32))
        box_public = _write_box_key(keys, random_bytes)
    node_cert = _write_tls(keys, "node", node_name(name), now, cert_days)
    client_cert = _write_tls(keys, "client", client_name(name), now, cert_days)
    return _Member(name, index, auditor, record_key, validator_key, node_cert, client_cert,
                   box_public if not auditor else b"")


def _write_box_key(keys: Path, random_bytes: Callable[[int], bytes]) -> bytes:
    """The agency's X25519 pair for off-ledger delivery: box.key (0600) and box.pub."""
    from nacl.public import PrivateKey

    secret = PrivateKey(random_bytes(32))
    write_secret(keys / "box.key", bytes(secret))
    public = bytes(secret.public_key)
    (keys / "box.pub").write_text(encode_box_key(public) + "\n")
    return public


def _write_tls(keys: Path, stem: str, name: str, now: datetime, days: int) -> bytes:
    cert, key = generate_identity(name, now, days)
    (keys / f"{stem}.crt").write_bytes(cert)
    write_secret(keys / f"{stem}.key", key)
    return cert


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; never replaces an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _genesis(members: list[_Member], network: str, now: datetime) -> Genesis:
    validators = tuple(
        Validator(m.validator_key.verifier, 1, m.name) for m in members if m.validator_key
    )
    agencies = tuple(
        Agency(
            name=m.name,
            record_keys=(m.record_key.verifier,) if m.record_key else (),
            role="auditor" if m.auditor else "agency",
            node_certs=(m.node_cert.decode("ascii"),),
            client_certs=(m.client_cert.decode("ascii"),),
            box_keys=(m.box_public,) if m.box_public else (),
        )
        for m in members
    )
    genesis = Genesis(network, validators, agencies, time_ms=int(now.timestamp() * 1000))
    genesis.check()
    return genesis


def _spec(members: list[_Member]) -> dict[str, Any]:
    """The genesis spec for the generated network, naming files relative to DIR."""

    def entry(m: _Member) -> dict[str, Any]:
        keys = f"{m.folder}/keys"
        doc: dict[str, Any] = {"name": m.name, "role": "auditor" if m.auditor else "agency"}
        if m.record_key and m.validator_key:
            doc["record_keys"] = [f"{keys}/{m.name}.vkey"]
            doc["validators"] = [{"vkey": f"{keys}/validator.{m.name}.vkey", "power": 1}]
        if m.box_public:
            doc["box_keys"] = [f"{keys}/box.pub"]
        doc["node_certs"] = [f"{keys}/node.crt"]
        doc["client_certs"] = [f"{keys}/client.crt"]
        return doc

    return {"format": SPEC_FORMAT, "agencies": [entry(m) for m in members], "witnesses": []}


# --- config files --------------------------------------------------------------------------


def _address(port: int) -> str:
    return f"{LOOPBACK}:{port}"


def _write_node_config(
    dir: Path, m: _Member, members: list[_Member], base_port: int, metrics_base_port: int
) -> None:
    keys: dict[str, object] = {"tls_cert": "keys/node.crt", "tls_key": "keys/node.key"}
    if m.validator_key:
        keys["validator_key"] = f"keys/validator.{m.name}.skey"
    tables: list[tuple[str, dict[str, object]]] = [
        ("[node]", {
            "name": m.name,
            "role": "observer" if m.auditor else "validator",
            "data_dir": "data",
            "genesis": "../genesis.json",
            "listen": _address(base_port + m.index),
        }),
        ("[keys]", keys),
        *(_peer_table(p, base_port) for p in members if p is not m),
        ("[metrics]", {"listen": _address(metrics_base_port + m.index)}),
    ]
    (dir / m.folder / "node.toml").write_text(_toml(f"node {m.name}", tables))


def _peer_table(peer: _Member, base_port: int) -> tuple[str, dict[str, object]]:
    return "[[peers]]", {"name": peer.name, "address": _address(base_port + peer.index)}


def _write_client_profile(dir: Path, m: _Member, base_port: int) -> None:
    client: dict[str, object] = {
        "agency": m.name,
        "address": _address(base_port + m.index),
        "server_name": node_name(m.name),
        "genesis": "../genesis.json",
        "tls_cert": "keys/client.crt",
        "tls_key": "keys/client.key",
    }
    if m.record_key:
        client["record_key"] = f"keys/{m.name}.skey"
        client["pseudonym_key"] = "keys/pseudonym.key"
        client["box_key"] = "keys/box.key"
    text = _toml(f"API client of {m.name}", [("[client]", client)])
    (dir / m.folder / "client.toml").write_text(text)


def _toml(title: str, tables: list[tuple[str, dict[str, object]]]) -> str:
    """TOML text; strings as JSON strings, which are valid TOML basic strings."""
    lines = [f"# {title}: generated by `shadowledger network init`; see docs/CONFIG.md"]
    for header, values in tables:
        lines += ["", header]
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


# --- manifest ------------------------------------------------------------------------------


def _local_network(
    dir: Path, network: str, members: list[_Member], base_port: int, metrics_base_port: int
) -> LocalNetwork:
    nodes = tuple(
        LocalNode(
            m.name,
            "observer" if m.auditor else "validator",
            dir / m.folder / "node.toml",
            _address(base_port + m.index),
            _address(metrics_base_port + m.index),
        )
        for m in members
    )
    agencies = tuple(
        LocalAgency(m.name, "auditor" if m.auditor else "agency", dir / m.folder / "client.toml")
        for m in members
    )
    return LocalNetwork(dir, network, dir / "genesis.json", nodes, agencies)


def _manifest(local: LocalNetwork) -> dict[str, Any]:
    def rel(path: Path) -> str:
        return path.relative_to(local.dir).as_posix()

    return {
        "format": MANIFEST_FORMAT,
        "network": local.network,
        "genesis": rel(local.genesis_path),
        "nodes": [
            {"agency": n.agency, "role": n.role, "config": rel(n.config_path),
             "address": n.address, "metrics": n.metrics_address}
            for n in local.nodes
        ],
        "agencies": [
            {"name": a.name, "role": a.role, "client_profile": rel(a.client_profile)}
            for a in local.agencies
        ],
    }


def load_local_network(dir: Path) -> LocalNetwork:
    """Read ``DIR/localnet.json`` as written by ``generate``."""
    path = dir / MANIFEST
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("format") != MANIFEST_FORMAT:
            raise ConfigError(f"{path}: format is {doc.get('format')!r}, want {MANIFEST_FORMAT!r}")
        nodes = tuple(
            LocalNode(n["agency"], n["role"], dir / n["config"], n["address"], n["metrics"])
            for n in doc["nodes"]
        )
        agencies = tuple(
            LocalAgency(a["name"], a["role"], dir / a["client_profile"]) for a in doc["agencies"]
        )
        return LocalNetwork(dir, doc["network"], dir / doc["genesis"], nodes, agencies)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a local network manifest ({exc})") from exc


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


# --- genesis from a spec of public material ----------------------------------------------


class _Spec:
    """Reads a genesis spec; values are inline (vkey text, PEM) or files relative to it."""

    def __init__(self, path: Path, now: datetime) -> None:
        self.path, self.base, self.now = path, path.resolve().parent, now

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {message}")

    def text(self, where: str, value: object) -> str:
        """The value itself if it is a vkey or PEM, else the contents of the file it names."""
        if not isinstance(value, str) or not value:
            raise self.error(where, f"must be a vkey, a PEM or a file path, got {value!r}")
        if value.startswith("-----BEGIN") or _is_vkey(value):
            return value
        try:
            return (self.base / value).read_text(encoding="utf-8").strip() + "\n"
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(where, f"cannot read {self.base / value}: {exc}") from exc

    def vkey(self, where: str, value: object) -> VerifierKey:
        try:
            return VerifierKey.from_vkey(self.text(where, value).strip())
        except FormatError as exc:
            raise self.error(where, str(exc)) from exc

    def box_key(self, where: str, value: object) -> bytes:
        """An X25519 public key: inline base64, or a file holding it (``NAME.boxpub``)."""
        try:
            return decode_box_key(value)
        except FormatError:
            pass
        try:
            return decode_box_key(self.text(where, value).strip())
        except FormatError as exc:
            raise self.error(where, str(exc)) from exc

    def cert(self, where: str, value: object, want_name: str | None) -> str:
        pem = self.text(where, value)
        try:
            check_pinnable(pem.encode("ascii"), where)
            expires = load_certificate(pem.encode("ascii")).not_valid_after_utc
        except (FormatError, UnicodeEncodeError) as exc:
            raise self.error(where, str(exc)) from exc
        if expires <= self.now:
            raise self.error(where, f"certificate expired on {expires:%Y-%m-%d}; issue a new one")
        if want_name and want_name not in dns_names(pem.encode("ascii")):
            raise self.error(
                where, f"certificate SAN must include {want_name} (peers dial nodes by that name)"
            )
        return pem

    def items(self, where: str, doc: dict[str, Any], key: str) -> list[Any]:
        value = doc.get(key, [])
        if not isinstance(value, list):
            raise self.error(f"{where}.{key}", "must be a list")
        return value


def _is_vkey(text: str) -> bool:
    try:
        VerifierKey.from_vkey(text)
    except FormatError:
        return False
    return True


def genesis_from_spec(spec_path: Path, network: str, now: datetime) -> Genesis:
    """Build and check a genesis from a ``shadowledger/genesis-spec/v1`` file (docs/CONFIG.md)."""
    spec = _Spec(spec_path, now)
    data = spec_path.read_bytes()
    if len(data) > MAX_SPEC_BYTES:
        raise spec.error("(file)", f"{len(data)} bytes, over {MAX_SPEC_BYTES}")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise spec.error("(file)", f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != SPEC_FORMAT:
        raise spec.error("format", f"must be {SPEC_FORMAT!r}")
    validators: list[Validator] = []
    agencies = [
        _spec_agency(spec, f"agencies[{i}]", a, validators)
        for i, a in enumerate(spec.items("(top)", doc, "agencies"))
    ]
    witnesses = tuple(
        spec.vkey(f"witnesses[{i}]", w) for i, w in enumerate(spec.items("(top)", doc, "witnesses"))
    )
    genesis = Genesis(
        network, tuple(validators), tuple(agencies), witnesses, int(now.timestamp() * 1000)
    )
    try:
        genesis.check()
        pins_from_genesis(genesis)  # refuses a certificate pinned twice
        Genesis.from_bytes(genesis.to_bytes())
    except FormatError as exc:
        raise spec.error("(genesis)", str(exc)) from exc
    return genesis


def _spec_agency(
    spec: _Spec, where: str, doc: object, validators: list[Validator]
) -> Agency:
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise spec.error(where, "must be an object with a name")
    name: str = doc["name"]
    unknown = set(doc) - {"name", "role", "record_keys", "validators", "node_certs",
                          "client_certs", "box_keys"}
    if unknown:
        raise spec.error(f"{where}.{sorted(unknown)[0]}", "unknown key")
    for i, v in enumerate(spec.items(where, doc, "validators")):
        entry = v if isinstance(v, dict) else {"vkey": v}
        power = entry.get("power", 1)
        if isinstance(power, bool) or not isinstance(power, int) or power < 1:
            raise spec.error(f"{where}.validators[{i}].power", "must be a positive integer")
        key = spec.vkey(f"{where}.validators[{i}].vkey", entry.get("vkey"))
        validators.append(Validator(key, power, name))
    return Agency(
        name=name,
        record_keys=tuple(
            spec.vkey(f"{where}.record_keys[{i}]", k)
            for i, k in enumerate(spec.items(where, doc, "record_keys"))
        ),
        role=str(doc.get("role", "agency")),
        node_certs=tuple(
            spec.cert(f"{where}.node_certs[{i}]", c, node_name(name))
            for i, c in enumerate(spec.items(where, doc, "node_certs"))
        ),
        client_certs=tuple(
            spec.cert(f"{where}.client_certs[{i}]", c, None)
            for i, c in enumerate(spec.items(where, doc, "client_certs"))
        ),
        box_keys=tuple(
            spec.box_key(f"{where}.box_keys[{i}]", k)
            for i, k in enumerate(spec.items(where, doc, "box_keys"))
        ),
    )

"""The genesis document: the only thing an auditor has to trust.

It names the network (the checkpoint origin), the validators (signed-note keys, with
voting power) and each agency's record-signing keys. Its SHA-256 over the exact file
bytes is the ``prev_hash`` of block 1, so every block chains back to it.

Format: UTF-8 JSON (``to_bytes`` writes sorted keys, one-space indent):
    {"format": "shadowledger/genesis/v1", "network": ORIGIN, "time_ms": INT,
     "validators": [{"vkey": VKEY, "power": INT, "agency": NAME}, ...],
     "agencies": [{"name": NAME, "role": "agency" | "auditor",
                   "record_keys": [VKEY, ...],
                   "node_certs": [PEM, ...], "client_certs": [PEM, ...],
                   "box_keys": [BASE64, ...]}, ...],
     "witnesses": [VKEY, ...],
     "governance": {"approvals": INT}}
``governance`` (optional, written only when set) is how many agency approvals a
governance proposal needs (default: more than two thirds of the agencies with role
"agency"); a validator entry may carry an ``"address"`` (host:port, optional). Governance
records on the ledger replace this membership later (``ledger/membership.py``).
``box_keys`` (optional, written only when present, so older genesis files keep their
exact bytes and hash) are the agency's X25519 public keys for off-ledger delivery: a
provider seals payloads to the recipient's first box key (docs/PRIVACY.md).
TLS certificates are pinned by the genesis: a node accepts exactly these, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.checkpoint import quorum_threshold
from ledger.errors import FormatError
from ledger.keys import VerifierKey
from ledger.records import Keyring

FORMAT = "shadowledger/genesis/v1"
MAX_GENESIS_BYTES = 1 << 20


BOX_KEY_BYTES = 32
"""An X25519 public key (nacl ``PublicKey``)."""

ROLES = ("agency", "auditor")
"""An auditor (regulator, audit office) reads everything and writes nothing."""


@dataclass(frozen=True)
class Validator:
    key: VerifierKey
    power: int = 1
    agency: str = ""
    """The agency that runs this validator's node."""
    address: str = ""
    """host:port other validators dial (optional; a node's config ``peers`` win)."""


@dataclass(frozen=True)
class Agency:
    name: str
    record_keys: tuple[VerifierKey, ...]
    role: str = "agency"
    node_certs: tuple[str, ...] = ()
    """PEM certificates of the agency's node(s), pinned for mTLS between nodes."""
    client_certs: tuple[str, ...] = ()
    """PEM certificates of the agency's API clients, pinned for mTLS to any node."""
    box_keys: tuple[bytes, ...] = ()
    """X25519 public keys payloads are sealed to (the first is current)."""


@dataclass(frozen=True)
class Genesis:
    network: str
    validators: tuple[Validator, ...]
    agencies: tuple[Agency, ...]
    witnesses: tuple[VerifierKey, ...] = ()
    time_ms: int = 0
    approvals: int = 0
    """Agency approvals a governance proposal needs; 0 = the default, more than two
    thirds of the agencies with role "agency" (``ledger/membership.py``)."""

    @property
    def validator_keys(self) -> list[VerifierKey]:
        return [v.key for v in self.validators]

    @property
    def threshold(self) -> int:
        """Signatures a checkpoint needs: 2f+1 of n = 3f+1 validators."""
        return quorum_threshold(len(self.validators))

    def keyring(self) -> Keyring:
        return Keyring(k for a in self.agencies for k in a.record_keys)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "network": self.network,
            "validators": [_validator_json(v) for v in self.validators],
            "agencies": [_agency_json(a) for a in self.agencies],
            "witnesses": [w.to_vkey() for w in self.witnesses],
            "time_ms": self.time_ms,
            **({"governance": {"approvals": self.approvals}} if self.approvals else {}),
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), sort_keys=True, indent=1) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Genesis:
        if len(data) > MAX_GENESIS_BYTES:
            raise FormatError(f"genesis is {len(data)} bytes, over {MAX_GENESIS_BYTES}")
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise FormatError(f"genesis format is {doc.get('format')!r}, want {FORMAT!r}")
            genesis = cls(
                network=str(doc["network"]),
                validators=tuple(
                    Validator(
                        VerifierKey.from_vkey(v["vkey"]),
                        int(v.get("power", 1)),
                        str(v.get("agency", "")),
                        str(v.get("address", "")),
                    )
                    for v in doc["validators"]
                ),
                agencies=tuple(_agency(a) for a in doc["agencies"]),
                witnesses=tuple(VerifierKey.from_vkey(w) for w in doc.get("witnesses", [])),
                time_ms=int(doc.get("time_ms", 0)),
                approvals=int(doc.get("governance", {}).get("approvals", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"genesis is not a valid {FORMAT} document: {exc}") from exc
        genesis.check()
        return genesis

    def agency(self, name: str) -> Agency | None:
        return next((a for a in self.agencies if a.name == name), None)

    def check(self) -> None:
        check_members(self.validators, self.agencies, "genesis")
        voters = sum(1 for a in self.agencies if a.role == "agency")
        if self.approvals < 0 or self.approvals > max(voters, 1):
            raise FormatError(f"genesis: governance approvals must be 1..{max(voters, 1)}")


def check_members(validators: tuple[Validator, ...], agencies: tuple[Agency, ...],
                  what: str) -> None:
    """The checks a genesis and every later membership pass (``FormatError``)."""
    if not validators:
        raise FormatError(f"{what} names no validators")
    if len({v.key.key_hash for v in validators}) != len(validators):
        raise FormatError(f"{what} lists a validator key twice")
    if any(v.power <= 0 for v in validators):
        raise FormatError("every validator's power must be positive")
    names = [a.name for a in agencies]
    if len(set(names)) != len(names):
        raise FormatError(f"{what} lists an agency twice")
    for v in validators:
        if v.agency and v.agency not in names:
            raise FormatError(f"validator {v.key.name} names unknown agency {v.agency}")
    for agency in agencies:
        if agency.role not in ROLES:
            raise FormatError(f"agency {agency.name} has unknown role {agency.role!r}")
        for key in agency.record_keys:
            if key.name != agency.name:
                raise FormatError(f"record key {key.name} is listed under {agency.name}")
        if any(len(k) != BOX_KEY_BYTES for k in agency.box_keys):
            raise FormatError(f"agency {agency.name}: a box key must be {BOX_KEY_BYTES} bytes")


def _validator_json(v: Validator) -> dict[str, Any]:
    doc: dict[str, Any] = {"vkey": v.key.to_vkey(), "power": v.power, "agency": v.agency}
    if v.address:
        doc["address"] = v.address
    return doc


def _agency(doc: dict[str, Any]) -> Agency:
    return Agency(
        name=str(doc["name"]),
        record_keys=tuple(VerifierKey.from_vkey(k) for k in doc["record_keys"]),
        role=str(doc.get("role", "agency")),
        node_certs=tuple(str(c) for c in doc.get("node_certs", [])),
        client_certs=tuple(str(c) for c in doc.get("client_certs", [])),
        box_keys=tuple(decode_box_key(k) for k in doc.get("box_keys", [])),
    )


def _agency_json(a: Agency) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": a.name,
        "role": a.role,
        "record_keys": [k.to_vkey() for k in a.record_keys],
        "node_certs": list(a.node_certs),
        "client_certs": list(a.client_certs),
    }
    if a.box_keys:
        doc["box_keys"] = [encode_box_key(k) for k in a.box_keys]
    return doc


def encode_box_key(key: bytes) -> str:
    """The text form of an X25519 public key: standard base64 of its 32 bytes."""
    return base64.b64encode(key).decode("ascii")


def decode_box_key(text: object) -> bytes:
    """Parse :func:`encode_box_key` output; ``FormatError`` on anything else."""
    if not isinstance(text, str):
        raise FormatError(f"a box key must be base64 text, got {type(text).__name__}")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"box key {text[:16]!r} is not base64") from exc
    if len(key) != BOX_KEY_BYTES:
        raise FormatError(f"box key is {len(key)} bytes, want {BOX_KEY_BYTES}")
    return key


def genesis_hash(data: bytes) -> bytes:
    """``prev_hash`` of block 1: SHA-256 of the exact genesis file bytes."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class TrustRoot:
    """What an offline verifier trusts: a genesis, or a bare list of validator vkeys."""

    validators: tuple[VerifierKey, ...]
    threshold: int
    network: str | None = None
    keyring: Keyring | None = None
    genesis_hash: bytes | None = None

    @classmethod
    def load(cls, path: str | Path) -> TrustRoot:
        data = Path(path).read_bytes()
        if data.lstrip().startswith(b"{"):
            genesis = Genesis.from_bytes(data)
            return cls(
                tuple(genesis.validator_keys),
                genesis.threshold,
                genesis.network,
                genesis.keyring(),
                genesis_hash(data),
            )
        return cls.from_vkeys(data)

    @classmethod
    def from_vkeys(cls, data: bytes) -> TrustRoot:
        """One validator vkey per line; blank lines and '#' comments are ignored."""
        try:
            lines = data.decode().splitlines()
        except UnicodeDecodeError as exc:
            raise FormatError("trust file is neither a genesis nor UTF-8 vkey lines") from exc
        keys = tuple(
            VerifierKey.from_vkey(line.strip())
            for line in lines
            if line.strip() and not line.lstrip().startswith("#")
        )
        if not keys:
            raise FormatError("trust file lists no validator keys")
        return cls(keys, quorum_threshold(len(keys)))

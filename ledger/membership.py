"""Membership: the part of the genesis that governance may change.

A network starts with the membership its genesis names (validators with voting power,
agencies with their roles, record keys, pinned TLS certificates and box keys, witnesses,
and the number of agency approvals a governance proposal needs). A governance proposal
on the ledger carries a complete new membership document and the hash of the one it
replaces (compare-and-swap, so two proposals can never both apply to the same state);
once enough agencies approved it, it is in force from the next block on
(docs/GOVERNANCE.md, ``ledger/governance.py``).

Format: UTF-8 JSON with sorted keys and no insignificant whitespace (``to_bytes``), so
its SHA-256 (``hash``) is the membership's identity:
    {"format": "shadowledger/membership/v1",
     "validators": [{"vkey": VKEY, "power": INT, "agency": NAME, "address": HOST:PORT}, ...],
     "agencies": [... as in the genesis ...],
     "witnesses": [VKEY, ...],
     "approvals": INT}
``address`` is optional (written only when set): where the other validators dial a
validator that joined after genesis; a node's own config ``peers`` take precedence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ledger.checkpoint import quorum_threshold
from ledger.errors import FormatError
from ledger.genesis import (
    Agency,
    Genesis,
    Validator,
    _agency,
    _agency_json,
    _validator_json,
    check_members,
)
from ledger.keys import VerifierKey
from ledger.records import Keyring

FORMAT = "shadowledger/membership/v1"
MAX_MEMBERSHIP_BYTES = 1 << 20


def default_approvals(agencies: tuple[Agency, ...]) -> int:
    """More than two thirds of the agencies that may write (role "agency")."""
    voters = sum(1 for a in agencies if a.role == "agency")
    return 2 * voters // 3 + 1 if voters else 1


@dataclass(frozen=True)
class Membership:
    validators: tuple[Validator, ...]
    agencies: tuple[Agency, ...]
    witnesses: tuple[VerifierKey, ...] = ()
    approvals: int = 1
    """Distinct approving agencies (role "agency") a governance proposal needs."""

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> Membership:
        approvals = genesis.approvals or default_approvals(genesis.agencies)
        return cls(genesis.validators, genesis.agencies, genesis.witnesses, approvals)

    # -- derived views -------------------------------------------------------------

    @property
    def validator_keys(self) -> list[VerifierKey]:
        return [v.key for v in self.validators]

    @property
    def threshold(self) -> int:
        """Signatures a checkpoint needs: more than two thirds of the validators."""
        return quorum_threshold(len(self.validators))

    def keyring(self) -> Keyring:
        return Keyring(k for a in self.agencies for k in a.record_keys)

    @property
    def roles(self) -> Mapping[str, str]:
        return {a.name: a.role for a in self.agencies}

    @property
    def voters(self) -> frozenset[str]:
        """Agencies whose approval counts towards a governance proposal."""
        return frozenset(a.name for a in self.agencies if a.role == "agency")

    def agency(self, name: str) -> Agency | None:
        return next((a for a in self.agencies if a.name == name), None)

    def validator(self, public_key: bytes) -> Validator | None:
        return next((v for v in self.validators if v.key.public_key == public_key), None)

    # -- encoding ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "validators": [_validator_json(v) for v in self.validators],
            "agencies": [_agency_json(a) for a in self.agencies],
            "witnesses": [w.to_vkey() for w in self.witnesses],
            "approvals": self.approvals,
        }

    def to_bytes(self) -> bytes:
        return self._canonical

    @cached_property
    def _canonical(self) -> bytes:
        # Every field is an immutable tuple or scalar, so the encoding is computed once:
        # the consensus and checkpoint paths ask for ``hash`` several times per height.
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @cached_property
    def hash(self) -> bytes:
        return hashlib.sha256(self._canonical).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> Membership:
        """Parse and check a membership document; ``FormatError`` says what is wrong.

        Only the canonical encoding is accepted, so the hash a proposal names is the hash
        of the bytes it carries.
        """
        if len(data) > MAX_MEMBERSHIP_BYTES:
            raise FormatError(f"membership is {len(data)} bytes, over {MAX_MEMBERSHIP_BYTES}")
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                got = doc.get("format") if isinstance(doc, dict) else None
                raise FormatError(f"membership format is {got!r}, want {FORMAT!r}")
            unknown = set(doc) - {"format", "validators", "agencies", "witnesses", "approvals"}
            if unknown:
                raise FormatError(f"membership has unknown fields: {', '.join(sorted(unknown))}")
            membership = cls(
                validators=tuple(parse_validator(v) for v in doc["validators"]),
                agencies=tuple(_agency(a) for a in doc["agencies"]),
                witnesses=tuple(VerifierKey.from_vkey(w) for w in doc.get("witnesses", [])),
                approvals=int(doc["approvals"]),
            )
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"membership is not a valid {FORMAT} document: {exc}") from exc
        membership.check()
        if membership.to_bytes() != data:
            raise FormatError("membership is not canonically encoded (sorted keys, no spaces)")
        return membership

    def check(self) -> None:
        check_members(self.validators, self.agencies, "membership")
        voters = len(self.voters)
        if not 1 <= self.approvals <= max(voters, 1):
            raise FormatError(f"membership needs {self.approvals} approvals but has "
                              f"{voters} agencies that can approve")


def parse_validator(doc: dict[str, Any]) -> Validator:
    return Validator(
        VerifierKey.from_vkey(doc["vkey"]),
        int(doc.get("power", 1)),
        str(doc.get("agency", "")),
        str(doc.get("address", "")),
    )

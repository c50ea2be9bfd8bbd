"""Witness quorums for trusting a checkpoint: C2SP tlog-policy files, or "K of these keys".

A checkpoint is trusted when a validator quorum signed it (ledger/checkpoint.py) *and* its
witness cosignatures (tlog-cosignature/v1) satisfy the policy's quorum. Policy files follow
c2sp.org/tlog-policy: ``log <vkey> [url]`` (accepted; the log's own signatures are checked
against the genesis here), ``witness <name> <vkey> [url]``, ``group <name> all|any|<k>
<member>...`` (members defined on earlier lines, each at most once), exactly one
``quorum <name>`` (or ``quorum none``). Whitespace is spaces and tabs; ``#`` comments.
Quorum checks count distinct known witnesses and fail closed (STYLE.md rule 5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledger.cosignature import verify_cosignatures
from ledger.errors import FormatError, SignatureError, UsageError
from ledger.keys import ALG_COSIGNATURE_V1, VerifierKey
from ledger.limits import DEFAULT_LIMITS, Limits

NONE = "none"
MAX_POLICY_BYTES = 64 * 1024
MAX_ENTRIES = 256
_WS = re.compile(r"[ \t]+")
_BAD_OCTETS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Group:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class WitnessPolicy:
    """Named witnesses, groups over them, and the name whose satisfaction is the quorum."""

    witnesses: dict[str, VerifierKey] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    quorum: str = NONE
    urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def k_of(cls, keys: Sequence[VerifierKey], k: int) -> WitnessPolicy:
        """At least ``k`` of ``keys`` (the ``--witness-quorum K`` rule); k = 0 means none."""
        if k < 0:
            raise UsageError(f"witness quorum must be 0 or more, got {k}")
        if k == 0:
            return cls()
        distinct = list({key.key_hash: key for key in keys}.values())
        if k > len(distinct):
            raise UsageError(f"witness quorum {k} exceeds the {len(distinct)} known witnesses")
        witnesses = {key.name: key for key in distinct}
        if len(witnesses) != len(distinct):
            raise UsageError("two witness keys share a name")
        group = Group("quorum", k, tuple(witnesses))
        return cls(witnesses, {"quorum": group}, "quorum")

    @property
    def required(self) -> bool:
        return self.quorum != NONE

    def satisfied(self, cosigned: frozenset[bytes]) -> bool:
        """True if the witnesses whose key hashes are in ``cosigned`` meet the quorum."""
        return self._witnessed(self.quorum, cosigned)

    def _witnessed(self, name: str, cosigned: frozenset[bytes]) -> bool:
        if name == NONE:
            return True
        if name in self.witnesses:
            return self.witnesses[name].key_hash in cosigned
        group = self.groups[name]
        done = sum(self._witnessed(member, cosigned) for member in group.members)
        return done >= group.threshold

    def describe(self) -> str:
        if not self.required:
            return "no witness cosignature required"
        group = self.groups.get(self.quorum)
        if group is None:
            return f"cosignature of witness {self.quorum}"
        return f"{group.threshold} of {len(group.members)} of group {group.name}"


@dataclass(frozen=True)
class WitnessCheck:
    cosigned_by: tuple[str, ...]
    satisfied: bool


def check_witnesses(note: bytes, policy: WitnessPolicy, limits: Limits = DEFAULT_LIMITS
                    ) -> WitnessCheck:
    """Verify the cosignatures of the policy's witnesses on ``note`` and test the quorum.

    A bad cosignature from a known witness raises SignatureError (as for validators).
    """
    if not policy.required:
        return WitnessCheck((), True)
    result = verify_cosignatures(note, list(policy.witnesses.values()), limits)
    names = tuple(sorted(c.witness.name for c in result.cosignatures))
    return WitnessCheck(names, policy.satisfied(result.witnesses))


def require_witnesses(note: bytes, policy: WitnessPolicy, limits: Limits = DEFAULT_LIMITS
                      ) -> tuple[str, ...]:
    """The witnesses that cosigned, or SignatureError if the quorum is not met."""
    result = check_witnesses(note, policy, limits)
    if not result.satisfied:
        got = ", ".join(result.cosigned_by) or "none"
        raise SignatureError(f"checkpoint lacks witness cosignatures: need"
                             f" {policy.describe()}, cosigned by {got}")
    return result.cosigned_by


# --- tlog-policy files -----------------------------------------------------------------


class _PolicyParser:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.witnesses: dict[str, VerifierKey] = {}
        self.groups: dict[str, Group] = {}
        self.urls: dict[str, str] = {}
        self.logs: set[bytes] = set()
        self.quorum: str | None = None

    def error(self, number: int, message: str) -> FormatError:
        return FormatError(f"policy line {number}: {message}")

    def line(self, number: int, words: list[str]) -> None:
        keyword, args = words[0], words[1:]
        handler = {"log": self.log, "witness": self.witness, "group": self.group,
                   "quorum": self.set_quorum}.get(keyword)
        if handler is None:
            raise self.error(number, f"unknown keyword {keyword!r}")
        try:
            handler(args)
        except FormatError as exc:
            raise self.error(number, str(exc)) from exc

    def log(self, args: list[str]) -> None:
        if len(args) not in (1, 2):
            raise FormatError("expected: log <vkey> [<url>]")
        key = VerifierKey.from_vkey(args[0], self.limits)
        if key.public_key in self.logs:
            raise FormatError("duplicate log key")
        self.logs.add(key.public_key)

    def witness(self, args: list[str]) -> None:
        if len(args) not in (2, 3):
            raise FormatError("expected: witness <name> <vkey> [<url>]")
        name = self._new_name(args[0])
        key = VerifierKey.from_vkey(args[1], self.limits)
        if key.alg != ALG_COSIGNATURE_V1:
            raise FormatError(f"witness {name} key is type {key.alg:#04x}, need 0x04")
        if any(k.public_key == key.public_key for k in self.witnesses.values()):
            raise FormatError(f"witness {name} duplicates another witness's key")
        self.witnesses[name] = key
        if len(args) == 3:
            self.urls[name] = args[2]

    def group(self, args: list[str]) -> None:
        if len(args) < 3:
            raise FormatError("expected: group <name> all|any|<k> <member>...")
        name, rule, members = self._new_name(args[0]), args[1], args[2:]
        for member in members:
            if member == NONE or (member not in self.witnesses and member not in self.groups):
                raise FormatError(f"group member {member!r} is not defined above")
        if len(set(members)) != len(members):
            raise FormatError("a group lists a member twice")
        k = {"all": len(members), "any": 1}.get(rule)
        if k is None:
            if not rule.isdigit() or rule.startswith("0"):
                raise FormatError(f"threshold {rule!r} is not all, any or a decimal k")
            k = int(rule)
        if not 1 <= k <= len(members):
            raise FormatError(f"threshold {k} is not between 1 and {len(members)}")
        self.groups[name] = Group(name, k, tuple(members))

    def set_quorum(self, args: list[str]) -> None:
        if len(args) != 1:
            raise FormatError("expected: quorum <name>")
        if self.quorum is not None:
            raise FormatError("a policy has exactly one quorum line")
        name = args[0]
        if name != NONE and name not in self.witnesses and name not in self.groups:
            raise FormatError(f"quorum {name!r} is not defined above")
        self.quorum = name

    def _new_name(self, name: str) -> str:
        if name == NONE or name in self.witnesses or name in self.groups:
            raise FormatError(f"name {name!r} is reserved or already defined")
        return name


def parse_policy(data: bytes, limits: Limits = DEFAULT_LIMITS) -> WitnessPolicy:
    """Parse a c2sp.org/tlog-policy file; FormatError naming the line if it is invalid."""
    if len(data) > MAX_POLICY_BYTES:
        raise FormatError(f"policy is {len(data)} bytes, over {MAX_POLICY_BYTES}")
    text = data.decode("utf-8", "surrogateescape")  # high octets are opaque (tlog-policy)
    if _BAD_OCTETS.search(text):
        raise FormatError("policy contains a control character other than tab and newline")
    parser = _PolicyParser(limits)
    lines = text.split("\n")
    if len(lines) > MAX_ENTRIES * 4:
        raise FormatError("policy has too many lines")
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip(" \t")
        if stripped and not stripped.startswith("#"):
            parser.line(number, _WS.split(stripped))
    if parser.quorum is None:
        raise FormatError("policy has no quorum line")
    return WitnessPolicy(parser.witnesses, parser.groups, parser.quorum, parser.urls)

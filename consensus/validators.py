"""Validator sets: voting power, quorum thresholds and weighted round-robin proposers."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.errors import UsageError

MAX_SCHEDULE_PERIOD = 1 << 16
"""Bound on total power / gcd(powers): the length of one proposer rotation."""


@dataclass(frozen=True, slots=True)
class Validator:
    public_key: bytes
    power: int

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise UsageError("a validator key is a 32-byte Ed25519 public key")
        if self.power <= 0:
            raise UsageError("validator power must be positive")


@dataclass(frozen=True)
class ValidatorSet:
    """An ordered, non-empty set of validators (sorted by key, so order is canonical).

    ``quorum`` is the smallest power strictly above 2/3 of the total (2f+1 for n = 3f+1
    equal powers); ``weak_quorum`` the smallest strictly above 1/3 (f+1).
    """

    validators: tuple[Validator, ...]
    _power: dict[bytes, int] = field(init=False, repr=False, compare=False)
    _schedule: list[int] = field(init=False, repr=False, compare=False)
    _priorities: list[int] = field(init=False, repr=False, compare=False)
    _total: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.validators, key=lambda v: v.public_key))
        keys = {v.public_key for v in ordered}
        if not ordered or len(keys) != len(ordered):
            raise UsageError("a validator set needs at least one validator and unique keys")
        object.__setattr__(self, "_total", sum(v.power for v in ordered))
        if self.period > MAX_SCHEDULE_PERIOD:
            raise UsageError("powers too fine-grained: total power / gcd must be <= 65536")
        object.__setattr__(self, "validators", ordered)
        object.__setattr__(self, "_power", {v.public_key: v.power for v in ordered})
        object.__setattr__(self, "_schedule", [])
        object.__setattr__(self, "_priorities", [0] * len(ordered))

    @classmethod
    def equal(cls, public_keys: Iterable[bytes]) -> ValidatorSet:
        return cls(tuple(Validator(k, 1) for k in public_keys))

    @property
    def total_power(self) -> int:
        return self._total

    @property
    def quorum(self) -> int:
        return self.total_power * 2 // 3 + 1

    @property
    def weak_quorum(self) -> int:
        return self.total_power // 3 + 1

    @property
    def period(self) -> int:
        gcd = math.gcd(*(v.power for v in self.validators))
        return self.total_power // gcd

    def __len__(self) -> int:
        return len(self.validators)

    def __contains__(self, public_key: object) -> bool:
        return public_key in self._power

    def power_of(self, public_key: bytes) -> int:
        """Voting power of a key; 0 for keys outside the set (they are ignored, not errors)."""
        return self._power.get(public_key, 0)

    def digest(self) -> bytes:
        """SHA-256 over (key, power) pairs in canonical order; names the set in logs/docs."""
        h = hashlib.sha256(b"shadowledger/validator-set/v1\n")
        for v in self.validators:
            h.update(v.public_key + v.power.to_bytes(8, "big"))
        return h.digest()

    def proposer(self, height: int, round_: int) -> bytes:
        """proposer(h, r) of Algorithm 1: smooth weighted round robin, slot = h + r.

        Each validator proposes ``power / gcd`` times per period, interleaved (the nginx
        smooth weighted round-robin, as Tendermint's proposer priority does).
        """
        slot = (height + round_) % self.period
        while len(self._schedule) <= slot:
            self._schedule.append(self._next_in_rotation())
        return self.validators[self._schedule[slot]].public_key

    def _next_in_rotation(self) -> int:
        gcd = math.gcd(*(v.power for v in self.validators))
        prio = self._priorities
        for i, v in enumerate(self.validators):
            prio[i] += v.power // gcd
        best = max(range(len(prio)), key=lambda i: (prio[i], -i))
        prio[best] -= self.period
        return best

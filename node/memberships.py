"""The membership in force at each height, as the node needs it (docs/GOVERNANCE.md).

Governance changes the membership (validators, agencies, keys, pinned certificates) at
block boundaries: a membership adopted by a record of block h is in force from h+1.
The committed part comes from a ``MembershipSource`` (the ledger's ``GovernanceBook``,
or ``StaticMembership`` in tests); consensus also needs the membership after blocks that
are decided but not yet written, which a validator's ``LedgerApp.governance_state`` gives
(staged blocks included).

Everything in the node that depends on membership asks here: consensus the validator
set of a height (``validator_set``), the checkpoint collector the signers of a tree size
(``for_size``), the mempool, TLS pins, peers and client authentication the current one
(``current``; ``listeners`` are told when it changes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from consensus.validators import Validator as ConsensusValidator
from consensus.validators import ValidatorSet
from ledger.membership import Membership


class MembershipSource(Protocol):
    """The committed memberships (what ``ledger.governance.GovernanceBook`` offers)."""

    def membership(self) -> Membership:
        """The membership in force after the last committed block (for the next one)."""
        ...

    def membership_at(self, height: int) -> Membership:
        """The membership in force at ``height`` (<= the committed head + 1)."""
        ...

    def membership_for_size(self, size: int) -> Membership:
        """The membership whose validators sign checkpoints of tree size ``size``."""
        ...


class StaticMembership:
    """One membership for every height and size: a network without adoptions (and the
    source tests script by hand through ``adopt``)."""

    def __init__(self, membership: Membership) -> None:
        self._changes: list[tuple[int, int, Membership]] = [(1, 0, membership)]
        """(from height, tree size at adoption T_i, membership), oldest first."""

    def adopt(self, from_height: int, tree_size: int, membership: Membership) -> None:
        """Scripted adoption (tests): ``membership`` in force from ``from_height``; it
        signs checkpoints of sizes above ``tree_size``."""
        self._changes.append((from_height, tree_size, membership))

    def membership(self) -> Membership:
        return self._changes[-1][2]

    def membership_at(self, height: int) -> Membership:
        return [m for start, _, m in self._changes if start <= height][-1]

    def membership_for_size(self, size: int) -> Membership:
        found = self._changes[0][2]
        for i, (_, adopted_size, m) in enumerate(self._changes):
            if i == 0 or adopted_size < size:
                found = m
        return found


def validator_set_of(membership: Membership) -> ValidatorSet:
    return ValidatorSet(tuple(
        ConsensusValidator(v.key.public_key, v.power) for v in membership.validators
    ))


class MembershipState(Protocol):
    """Memberships after some prefix of the chain (``ledger.governance.GovernanceState``)."""

    @property
    def current(self) -> Membership: ...

    def at_height(self, height: int) -> Membership: ...

    def for_size(self, size: int) -> Membership: ...


class NodeMemberships:
    """Committed memberships from a source, or, on a validator, the memberships after its
    staged blocks too (``staged``: ``LedgerApp.governance_state``). Thread-safe reads."""

    def __init__(self, source: MembershipSource,
                 staged: Callable[[], MembershipState] | None = None) -> None:
        self.source = source
        self.staged = staged
        self._sets: dict[bytes, ValidatorSet] = {}
        self._lock = threading.Lock()
        self._current_hash = source.membership().hash
        self.listeners: list[Callable[[Membership], None]] = []
        """Called (on the thread that noticed) when the current membership changed:
        mempool keyring, TLS pins, peers."""

    def at(self, height: int) -> Membership:
        if self.staged is not None:
            return self.staged().at_height(height)
        return self.source.membership_at(height)

    def current(self) -> Membership:
        """The membership the next block is decided by."""
        if self.staged is not None:
            return self.staged().current
        return self.source.membership()

    def for_size(self, size: int) -> Membership:
        if self.staged is not None:
            return self.staged().for_size(size)
        return self.source.membership_for_size(size)

    def validator_set(self, height: int) -> ValidatorSet:
        """``consensus.tendermint.ValidatorsAt``: the consensus view of ``at(height)``."""
        membership = self.at(height)
        key = membership.hash
        with self._lock:
            found = self._sets.get(key)
            if found is None:
                found = self._sets[key] = validator_set_of(membership)
        return found

    def refresh(self) -> None:
        """After a commit (or a restart of consensus): tell the listeners if the current
        membership changed."""
        current = self.current()
        with self._lock:
            if current.hash == self._current_hash:
                return
            self._current_hash = current.hash
        for listener in self.listeners:
            listener(current)

"""Vote tallies for one height: de-duplicated per (validator, round, type), by power."""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.messages import Vote, VoteType
from consensus.validators import ValidatorSet


@dataclass(slots=True)
class RoundVotes:
    """Votes of one (round, type): per validator, every distinct vote (up to a cap), and
    power per block id counting each validator at most once per block id."""

    votes: dict[bytes, list[Vote]] = field(default_factory=dict)
    power_by_block: dict[bytes | None, int] = field(default_factory=dict)
    total: int = 0
    """Power of distinct validators with any vote here (the "2f+1 <*>" of lines 34, 47)."""


@dataclass(frozen=True, slots=True)
class AddResult:
    added: bool
    conflicting: Vote | None
    """An earlier, different vote of the same validator in the same slot (equivocation)."""


_DUPLICATE = AddResult(False, None)
_ADDED = AddResult(True, None)


class HeightVotes:
    """All votes seen at one height, plus who spoke in which round (for line 55).

    Like the paper, a rule "2f+1 <PREVOTE, h, r, id(v)>" counts every validator that sent
    that message, even one that also sent a conflicting vote: an honest node that saw a
    Byzantine validator's other vote first must still be able to see a quorum (a POL) that
    the rest of the network saw. Quorum intersection still holds, since only Byzantine
    validators appear on both sides. The conflicting vote is reported as evidence.
    """

    def __init__(self, validators: ValidatorSet, max_votes_per_slot: int = 4) -> None:
        self._validators = validators
        self._cap = max_votes_per_slot
        self._rounds: dict[tuple[int, VoteType], RoundVotes] = {}
        self._senders: dict[int, set[bytes]] = {}
        self._sender_power: dict[int, int] = {}

    def add(self, vote: Vote) -> AddResult:
        """Count a vote once per block id; a different vote in its slot is also reported."""
        slot = self._rounds.get((vote.round, vote.vote_type))
        if slot is None:
            slot = self._rounds[(vote.round, vote.vote_type)] = RoundVotes()
        power = self._validators.power_of(vote.validator)
        earlier = slot.votes.get(vote.validator)
        if earlier is None:
            slot.votes[vote.validator] = [vote]
            slot.total += power
            self.note_sender(vote.round, vote.validator)
            result = _ADDED
        elif any(e.block_id == vote.block_id for e in earlier) or len(earlier) >= self._cap:
            return _DUPLICATE
        else:
            earlier.append(vote)
            result = AddResult(True, earlier[0])
        slot.power_by_block[vote.block_id] = slot.power_by_block.get(vote.block_id, 0) + power
        return result

    def note_sender(self, round_: int, validator: bytes) -> int:
        """Record that ``validator`` sent something for ``round_``; return that round's power."""
        senders = self._senders.setdefault(round_, set())
        if validator not in senders:
            senders.add(validator)
            power = self._sender_power.get(round_, 0) + self._validators.power_of(validator)
            self._sender_power[round_] = power
        return self._sender_power[round_]

    def power_for(self, round_: int, vote_type: VoteType, block_id: bytes | None) -> int:
        slot = self._rounds.get((round_, vote_type))
        return 0 if slot is None else slot.power_by_block.get(block_id, 0)

    def total(self, round_: int, vote_type: VoteType) -> int:
        slot = self._rounds.get((round_, vote_type))
        return 0 if slot is None else slot.total

    def votes_for(self, round_: int, vote_type: VoteType, block_id: bytes | None) -> list[Vote]:
        slot = self._rounds.get((round_, vote_type))
        if slot is None:
            return []
        return [v for vs in slot.votes.values() for v in vs if v.block_id == block_id]

    def own_votes(self, validator: bytes, round_: int) -> list[Vote]:
        found = (self._rounds.get((round_, t)) for t in VoteType)
        return [s.votes[validator][0] for s in found if s is not None and validator in s.votes]

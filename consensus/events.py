"""Inputs, outputs, configuration and persisted safety state of the state machine.

Contract for drivers: execute the actions of one ``handle`` call in list order, and let a
``PersistSafety`` finish durably (fsync) before executing any later action: the signed
message it guards comes after it in the same list (double-sign guard).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from consensus.certificate import CommitCertificate
from consensus.evidence import Equivocation
from consensus.messages import Proposal, SignedMessage, Step, Vote
from ledger.errors import FormatError


@dataclass(frozen=True)
class ConsensusConfig:
    """Timeouts in milliseconds of virtual or real time, and input bounds."""

    chain_id: bytes
    timeout_propose_ms: int = 300
    timeout_prevote_ms: int = 200
    timeout_precommit_ms: int = 200
    timeout_delta_ms: int = 100
    """Added per round to every timeout, so timeouts grow with the round."""
    retry_interval_ms: int = 1000
    """Resend own messages and missing-block requests this often (gossip stand-in)."""
    max_rounds_ahead: int = 1000
    """Messages for rounds further ahead than this are dropped (memory bound)."""
    max_future_per_validator: int = 16
    """Messages buffered per validator for the next height."""
    test_only_disable_lock_rule: bool = False
    """Deliberately unsafe: ignore lockedRound/lockedValue (lines 23 and 29). Tests only."""


class TimeoutKind(enum.IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    RETRY = 3


@dataclass(frozen=True, slots=True)
class Timeout:
    kind: TimeoutKind
    height: int
    round: int


# ---- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    proposal: Proposal
    block: bytes
    now: int


@dataclass(frozen=True, slots=True)
class VoteReceived:
    vote: Vote
    now: int


@dataclass(frozen=True, slots=True)
class TimeoutExpired:
    timeout: Timeout
    now: int


@dataclass(frozen=True, slots=True)
class BlockReceived:
    """Answer to ``RequestBlock``: bytes claimed to be the block with this id."""

    height: int
    block_id: bytes
    block: bytes
    now: int


@dataclass(frozen=True, slots=True)
class CommitReceived:
    """A decided block from a peer, with a certificate the driver already checked."""

    certificate: CommitCertificate
    block: bytes
    now: int


Event = ProposalReceived | VoteReceived | TimeoutExpired | BlockReceived | CommitReceived


# ---- outputs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersistSafety:
    state: SafetyState


@dataclass(frozen=True, slots=True)
class BroadcastProposal:
    proposal: Proposal
    block: bytes


@dataclass(frozen=True, slots=True)
class BroadcastVote:
    vote: Vote


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    timeout: Timeout
    deadline: int


@dataclass(frozen=True, slots=True)
class CommitBlock:
    height: int
    block_id: bytes
    block: bytes
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class RequestBlock:
    """2f+1 precommits name a block this node does not have: fetch it from peers."""

    height: int
    block_id: bytes


@dataclass(frozen=True, slots=True)
class SendCommit:
    """``peer`` is still at ``height``: send it that committed block and its certificate."""

    peer: bytes
    height: int


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    evidence: Equivocation


Action = (
    PersistSafety | BroadcastProposal | BroadcastVote | ScheduleTimeout | CommitBlock
    | RequestBlock | SendCommit | ReportEvidence
)


# ---- persisted safety state -------------------------------------------------------------

_SAFETY = struct.Struct(">qiBiiB")
_KIND = {Vote: 1, Proposal: 2}


def _opt(data: bytes | None) -> bytes:
    return b"\x00" if data is None else b"\x01" + len(data).to_bytes(4, "big") + data


def _read_opt(data: bytes, pos: int) -> tuple[bytes | None, int]:
    if pos >= len(data):
        raise FormatError("safety state is truncated")
    if data[pos] == 0:
        return None, pos + 1
    size = int.from_bytes(data[pos + 1 : pos + 5], "big")
    end = pos + 5 + size
    if data[pos] != 1 or end > len(data):
        raise FormatError("safety state has a bad optional field")
    return data[pos + 5 : end], end


def _read_message(data: bytes, pos: int) -> tuple[SignedMessage, int]:
    if pos >= len(data) or data[pos] not in (1, 2):
        raise FormatError("safety state has a bad signed message")
    raw, end = _read_opt(data, pos + 1)
    if raw is None:
        raise FormatError("safety state has an empty signed message")
    return (Vote.from_bytes(raw) if data[pos] == 1 else Proposal.from_bytes(raw)), end


@dataclass(frozen=True, slots=True)
class SafetyState:
    """What must survive a crash: the last signed (height, round, step) with the messages
    signed at that (height, round), the lock (lines 38-39), and validValue/validRound
    (lines 42-43, for liveness only)."""

    height: int
    round: int
    step: Step
    locked_round: int
    locked_block_id: bytes | None
    valid_round: int
    valid_block_id: bytes | None
    valid_block: bytes | None
    signed: tuple[SignedMessage, ...]
    proposed_block: bytes | None
    """The block of the proposal in ``signed``, if any, to re-send it after a restart."""

    @property
    def signed_position(self) -> tuple[int, int, int]:
        return (self.height, self.round, int(self.step))

    def to_bytes(self) -> bytes:
        head = _SAFETY.pack(
            self.height, self.round, int(self.step), self.locked_round, self.valid_round,
            len(self.signed),
        )
        fields = (self.locked_block_id, self.valid_block_id, self.valid_block, self.proposed_block)
        messages = (bytes([_KIND[type(m)]]) + _opt(m.to_bytes()) for m in self.signed)
        return head + b"".join(_opt(f) for f in fields) + b"".join(messages)

    @classmethod
    def from_bytes(cls, data: bytes) -> SafetyState:
        if len(data) < _SAFETY.size:
            raise FormatError("safety state is truncated")
        height, round_, step, locked_round, valid_round, count = _SAFETY.unpack_from(data)
        if step > 2 or count > 3:
            raise FormatError("safety state has an unknown step or too many messages")
        pos, values = _SAFETY.size, []
        for _ in range(4):
            value, pos = _read_opt(data, pos)
            values.append(value)
        signed = []
        for _ in range(count):
            message, pos = _read_message(data, pos)
            signed.append(message)
        if pos != len(data):
            raise FormatError("safety state has trailing bytes")
        locked_id, valid_id, valid_block, proposed = values
        return cls(
            height, round_, Step(step), locked_round, locked_id, valid_round, valid_id,
            valid_block, tuple(signed), proposed,
        )

"""Equivocation evidence: two conflicting signed messages from one validator.

Kept as the two signed messages themselves, in canonical order (sorted by wire bytes), so
the same misbehaviour always yields the same evidence and an auditor verifies it offline
with the validator set alone.

    wire = u8 kind (1 = votes, 2 = proposals) || u16 len || first || u16 len || second
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from consensus.crypto import signature_is_valid, signer_of
from consensus.messages import Proposal, SignedMessage, Vote
from consensus.validators import ValidatorSet
from ledger.errors import FormatError, SignatureError, UsageError, VerificationError

_KIND_VOTES = 1
_KIND_PROPOSALS = 2
_LEN = struct.Struct(">H")


def _slot(message: SignedMessage) -> tuple[object, ...]:
    """What two messages must share to conflict: chain, signer, height, round (and type)."""
    kind: object = message.vote_type if isinstance(message, Vote) else "proposal"
    return (message.chain_id, signer_of(message), message.height, message.round, kind)


def conflicts(a: SignedMessage, b: SignedMessage) -> bool:
    """Same slot, different content: a validator signed two things it must sign once."""
    return type(a) is type(b) and _slot(a) == _slot(b) and a.sign_bytes() != b.sign_bytes()


@dataclass(frozen=True, slots=True)
class Equivocation:
    first: SignedMessage
    second: SignedMessage

    @classmethod
    def of(cls, a: SignedMessage, b: SignedMessage) -> Equivocation:
        if not conflicts(a, b):
            raise UsageError("evidence needs two conflicting messages of one validator")
        first, second = sorted((a, b), key=lambda m: m.to_bytes())
        return cls(first, second)

    @property
    def validator(self) -> bytes:
        return signer_of(self.first)

    @property
    def height(self) -> int:
        return self.first.height

    def to_bytes(self) -> bytes:
        kind = _KIND_VOTES if isinstance(self.first, Vote) else _KIND_PROPOSALS
        a, b = self.first.to_bytes(), self.second.to_bytes()
        return bytes([kind]) + _LEN.pack(len(a)) + a + _LEN.pack(len(b)) + b

    @classmethod
    def from_bytes(cls, data: bytes) -> Equivocation:
        if len(data) < 3 or data[0] not in (_KIND_VOTES, _KIND_PROPOSALS):
            raise FormatError("evidence has an unknown kind")
        parse = Vote.from_bytes if data[0] == _KIND_VOTES else Proposal.from_bytes
        (len_a,) = _LEN.unpack_from(data, 1)
        a_end = 3 + len_a
        if len(data) < a_end + 2:
            raise FormatError("evidence is truncated")
        (len_b,) = _LEN.unpack_from(data, a_end)
        if len(data) != a_end + 2 + len_b:
            raise FormatError("evidence has the wrong length")
        try:
            return cls.of(parse(data[3:a_end]), parse(data[a_end + 2 :]))
        except UsageError as exc:
            raise FormatError(f"evidence is not an equivocation: {exc}") from exc


def verify_evidence(evidence: Equivocation, validators: ValidatorSet, chain_id: bytes) -> None:
    """Raise ``VerificationError`` unless the evidence proves equivocation by a validator."""
    if not conflicts(evidence.first, evidence.second):
        raise VerificationError("evidence messages do not conflict")
    if evidence.first.chain_id != chain_id:
        raise VerificationError("evidence is for another chain")
    if validators.power_of(evidence.validator) == 0:
        raise SignatureError("evidence names a key outside the validator set")
    for message in (evidence.first, evidence.second):
        if not signature_is_valid(evidence.validator, message.sign_bytes(), message.signature):
            raise SignatureError("evidence carries a signature that does not verify")

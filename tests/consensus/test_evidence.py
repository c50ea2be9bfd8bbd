"""Equivocation evidence that an auditor verifies offline."""

from __future__ import annotations

import pytest

from consensus.evidence import Equivocation, verify_evidence
from consensus.messages import Vote, VoteType
from ledger.errors import FormatError, SignatureError, UsageError, VerificationError
from tests.consensus.helpers import CHAIN, block, proposal, signers, valset, vote

KEYS = signers(4)
VALS = valset(KEYS)
A, _ = block(3, "a")
B, _ = block(3, "b")


def test_two_votes_in_one_slot_are_evidence_in_canonical_order() -> None:
    first = vote(KEYS[1], 3, 0, VoteType.PREVOTE, A)
    second = vote(KEYS[1], 3, 0, VoteType.PREVOTE, None)
    ev = Equivocation.of(first, second)
    assert ev == Equivocation.of(second, first)
    assert ev.validator == KEYS[1].public_key and ev.height == 3
    verify_evidence(ev, VALS, CHAIN)
    again = Equivocation.from_bytes(ev.to_bytes())
    assert again == ev
    verify_evidence(again, VALS, CHAIN)


def test_conflicting_proposals_are_evidence() -> None:
    ev = Equivocation.of(proposal(KEYS[2], 3, 1, A), proposal(KEYS[2], 3, 1, B))
    verify_evidence(Equivocation.from_bytes(ev.to_bytes()), VALS, CHAIN)


@pytest.mark.parametrize(
    "other",
    [
        vote(KEYS[1], 3, 0, VoteType.PREVOTE, A),  # same vote
        vote(KEYS[2], 3, 0, VoteType.PREVOTE, B),  # another validator
        vote(KEYS[1], 3, 1, VoteType.PREVOTE, B),  # another round
        vote(KEYS[1], 3, 0, VoteType.PRECOMMIT, B),  # another type
    ],
)
def test_non_conflicting_pairs_are_not_evidence(other: Vote) -> None:
    with pytest.raises(UsageError):
        Equivocation.of(vote(KEYS[1], 3, 0, VoteType.PREVOTE, A), other)


def test_forged_or_foreign_evidence_fails() -> None:
    good = vote(KEYS[1], 3, 0, VoteType.PREVOTE, A)
    forged = Vote(CHAIN, 3, 0, VoteType.PREVOTE, B, good.validator, good.signature)
    with pytest.raises(SignatureError):
        verify_evidence(Equivocation.of(good, forged), VALS, CHAIN)
    with pytest.raises(SignatureError):
        verify_evidence(Equivocation.of(good, forged), valset(signers(4, b"z")), CHAIN)
    honest = Equivocation.of(good, vote(KEYS[1], 3, 0, VoteType.PREVOTE, B))
    with pytest.raises(VerificationError):
        verify_evidence(honest, VALS, b"other-chain")


def test_malformed_evidence_bytes_raise_format_error() -> None:
    data = Equivocation.of(
        vote(KEYS[1], 3, 0, VoteType.PREVOTE, A), vote(KEYS[1], 3, 0, VoteType.PREVOTE, B)
    ).to_bytes()
    for bad in (b"", b"\x09" + data[1:], data[:-1], data + b"\x00"):
        with pytest.raises(FormatError):
            Equivocation.from_bytes(bad)

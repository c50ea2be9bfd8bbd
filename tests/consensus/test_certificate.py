"""Commit certificates verified against a validator set, offline."""

from __future__ import annotations

import pytest

from consensus.certificate import (
    CommitCertificate,
    CommitSignature,
    certificate_quorum,
    check_certificate,
)
from consensus.messages import VoteType
from ledger.errors import FormatError, SignatureError, UsageError
from tests.consensus.helpers import CHAIN, block, signers, valset, vote

KEYS = signers(4)
VALS = valset(KEYS)
BID, _ = block(5)


def cert_of(keys: list, bid: bytes = BID) -> CommitCertificate:  # type: ignore[type-arg]
    return CommitCertificate.from_precommits(vote(k, 5, 1, VoteType.PRECOMMIT, bid) for k in keys)


def test_quorum_of_precommits_verifies_and_round_trips() -> None:
    cert = cert_of(KEYS[:3])
    check_certificate(cert, VALS, CHAIN)
    again = CommitCertificate.from_bytes(cert.to_bytes())
    assert again == cert
    check_certificate(again, VALS, CHAIN)


def test_too_few_signers_fail() -> None:
    result = certificate_quorum(cert_of(KEYS[:2]), VALS, CHAIN)
    assert (result.ok, result.signed_power, result.threshold) == (False, 2, 3)
    with pytest.raises(SignatureError):
        check_certificate(cert_of(KEYS[:2]), VALS, CHAIN)


def test_duplicates_unknown_keys_and_bad_signatures_add_nothing() -> None:
    base = cert_of(KEYS[:2])
    outsider = cert_of(signers(1, b"x")).signatures
    forged = CommitSignature(KEYS[2].public_key, bytes(64))
    padded = CommitCertificate(
        base.chain_id, base.height, base.round, base.block_id,
        base.signatures + base.signatures + outsider + (forged,),
    )
    result = certificate_quorum(padded, VALS, CHAIN)
    assert result.signed_power == 2 and not result.ok
    assert result.rejected == frozenset({KEYS[2].public_key})


def test_signatures_for_another_block_or_chain_fail() -> None:
    other, _ = block(5, "b")
    moved = CommitCertificate(CHAIN, 5, 1, other, cert_of(KEYS[:3]).signatures)
    with pytest.raises(SignatureError):
        check_certificate(moved, VALS, CHAIN)
    with pytest.raises(SignatureError):
        check_certificate(cert_of(KEYS[:3]), VALS, b"other-chain")


def test_weighted_quorum_counts_power_not_heads() -> None:
    vals = valset(KEYS, [5, 1, 1, 1])  # total 8, quorum 6
    check_certificate(cert_of([KEYS[0], KEYS[1]]), vals, CHAIN)
    with pytest.raises(SignatureError):
        check_certificate(cert_of(KEYS[1:]), vals, CHAIN)


def test_malformed_bytes_and_mixed_precommits_are_refused() -> None:
    data = cert_of(KEYS[:3]).to_bytes()
    for bad in (b"", data[:-1], data + b"\x00", b"\x00" + data[1:]):
        with pytest.raises(FormatError):
            CommitCertificate.from_bytes(bad)
    other, _ = block(5, "b")
    with pytest.raises(UsageError):
        CommitCertificate.from_precommits(
            [
                vote(KEYS[0], 5, 1, VoteType.PRECOMMIT, BID),
                vote(KEYS[1], 5, 1, VoteType.PRECOMMIT, other),
            ]
        )

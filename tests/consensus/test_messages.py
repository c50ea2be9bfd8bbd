"""Wire and sign bytes of votes and proposals; the boundary check."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.crypto import verify_message
from consensus.messages import (
    PROPOSAL_DOMAIN,
    VOTE_DOMAIN,
    Proposal,
    Vote,
    VoteType,
    vote_sign_bytes,
)
from ledger.errors import FormatError, SignatureError, UsageError
from tests.consensus.helpers import CHAIN, block, proposal, signers, valset, vote

KEYS = signers(4)
VALS = valset(KEYS)


@given(
    height=st.integers(0, 2**64 - 1),
    round_=st.integers(0, 2**31 - 1),
    vtype=st.sampled_from(list(VoteType)),
    bid=st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
)
def test_vote_round_trips(height: int, round_: int, vtype: VoteType, bid: bytes | None) -> None:
    v = Vote(CHAIN, height, round_, vtype, bid, bytes(32), bytes(64))
    assert Vote.from_bytes(v.to_bytes()) == v


@given(vr=st.integers(-1, 2**31 - 1), bid=st.binary(min_size=32, max_size=32))
def test_proposal_round_trips(vr: int, bid: bytes) -> None:
    p = Proposal(CHAIN, 7, 3, vr, bid, bytes(32), bytes(64))
    assert Proposal.from_bytes(p.to_bytes()) == p


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_format_error(data: bytes) -> None:
    for parse in (Vote.from_bytes, Proposal.from_bytes):
        with contextlib.suppress(FormatError):
            parse(data)


def test_sign_bytes_are_domain_separated_and_fixed() -> None:
    bid = bytes(range(32))
    sb = vote_sign_bytes(CHAIN, 1, 2, VoteType.PRECOMMIT, bid)
    assert sb.startswith(VOTE_DOMAIN)
    assert sb == VOTE_DOMAIN + bytes([len(CHAIN)]) + CHAIN + (
        (1).to_bytes(8, "big") + (2).to_bytes(4, "big") + b"\x02\x01" + bid
    )
    nil = vote_sign_bytes(CHAIN, 1, 2, VoteType.PRECOMMIT, None)
    assert nil != sb and nil.endswith(b"\x00" + bytes(32))
    p = proposal(KEYS[0], 1, 2, bid)
    assert p.sign_bytes().startswith(PROPOSAL_DOMAIN)


def test_nil_vote_with_nonzero_id_is_refused() -> None:
    data = bytearray(vote(KEYS[0], 1, 0, VoteType.PREVOTE, None).to_bytes())
    data[1 + len(CHAIN) + 8 + 4 + 2] = 1  # first block-id byte of a nil vote
    with pytest.raises(FormatError):
        Vote.from_bytes(bytes(data))


def test_constructor_refuses_bad_fields() -> None:
    with pytest.raises(UsageError):
        Vote(CHAIN, 1, 0, VoteType.PREVOTE, b"short", bytes(32), bytes(64))
    with pytest.raises(UsageError):
        Proposal(CHAIN, 1, 0, -2, bytes(32), bytes(32), bytes(64))


def test_boundary_accepts_good_and_rejects_bad_messages() -> None:
    bid, _ = block(1)
    good = vote(KEYS[1], 1, 0, VoteType.PREVOTE, bid)
    verify_message(good, VALS, CHAIN)
    verify_message(proposal(KEYS[2], 1, 0, bid), VALS, CHAIN)
    forged = Vote(CHAIN, 1, 0, VoteType.PREVOTE, None, good.validator, good.signature)
    outsider = vote(signers(1, b"other")[0], 1, 0, VoteType.PREVOTE, bid)
    for bad, chain in ((forged, CHAIN), (outsider, CHAIN), (good, b"another-chain")):
        with pytest.raises(SignatureError):
            verify_message(bad, VALS, chain)

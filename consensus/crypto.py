"""Ed25519 signing and the boundary check of consensus messages.

The state machine only ever receives messages that passed ``verify_message``; the node (or
the simulator) calls it on every decoded message before handing it over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from consensus.messages import (
    Proposal,
    SignedMessage,
    Vote,
    VoteType,
    proposal_sign_bytes,
    vote_sign_bytes,
)
from consensus.validators import ValidatorSet
from ledger import ed25519
from ledger.errors import SignatureError, UsageError


class Signer(Protocol):
    """Holds one validator's private key; the state machine asks it to sign bytes."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Ed25519Signer:
    """A ``Signer`` over a 32-byte Ed25519 seed (randomness is the caller's business)."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise UsageError("an Ed25519 seed is 32 bytes")
        self._public, self._secret = ed25519.secret_key(seed)

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return ed25519.sign(self._secret, message)


SignatureCheck = Callable[[bytes, bytes, bytes], bool]
"""(public key, message, signature) -> valid; lets callers add a cache of verified triples."""


def signature_is_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by the key."""
    return ed25519.verify(public_key, message, signature)


def sign_vote(
    signer: Signer,
    chain_id: bytes,
    height: int,
    round_: int,
    vote_type: VoteType,
    block_id: bytes | None,
) -> Vote:
    signature = signer.sign(vote_sign_bytes(chain_id, height, round_, vote_type, block_id))
    return Vote(chain_id, height, round_, vote_type, block_id, signer.public_key, signature)


def sign_proposal(
    signer: Signer, chain_id: bytes, height: int, round_: int, valid_round: int, block_id: bytes
) -> Proposal:
    signature = signer.sign(proposal_sign_bytes(chain_id, height, round_, valid_round, block_id))
    return Proposal(chain_id, height, round_, valid_round, block_id, signer.public_key, signature)


def signer_of(message: SignedMessage) -> bytes:
    return message.validator if isinstance(message, Vote) else message.proposer


def verify_message(
    message: SignedMessage,
    validators: ValidatorSet,
    chain_id: bytes,
    check: SignatureCheck = signature_is_valid,
) -> None:
    """Boundary check: right chain, signer in the validator set, valid signature.

    Raises ``SignatureError`` (a ``VerificationError``: the peer is at fault) otherwise.
    """
    if message.chain_id != chain_id:
        raise SignatureError("consensus message is for another chain")
    signer = signer_of(message)
    if validators.power_of(signer) == 0:
        raise SignatureError("consensus message signed by a key outside the validator set")
    if not check(signer, message.sign_bytes(), message.signature):
        raise SignatureError("consensus message signature does not verify")

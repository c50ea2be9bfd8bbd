"""Shared helpers for consensus tests: deterministic keys, a tiny app, message factories."""

from __future__ import annotations

import hashlib

from consensus.crypto import Ed25519Signer, sign_proposal, sign_vote
from consensus.events import Action, ConsensusConfig
from consensus.messages import Proposal, Vote, VoteType
from consensus.sim.app import SimApplication, block_id_of
from consensus.tendermint import Tendermint
from consensus.validators import Validator, ValidatorSet

CHAIN = b"test-chain"
CONFIG = ConsensusConfig(chain_id=CHAIN)


def signers(n: int, tag: bytes = b"t") -> list[Ed25519Signer]:
    return [Ed25519Signer(hashlib.sha256(tag + bytes([i])).digest()) for i in range(n)]


def valset(keys: list[Ed25519Signer], powers: list[int] | None = None) -> ValidatorSet:
    powers = powers or [1] * len(keys)
    pairs = zip(keys, powers, strict=True)
    return ValidatorSet(tuple(Validator(s.public_key, p) for s, p in pairs))


def block(height: int, tag: str = "a") -> tuple[bytes, bytes]:
    data = f"block|{height}|0|{tag}|x".encode()
    return block_id_of(data), data


def vote(s: Ed25519Signer, h: int, r: int, t: VoteType, bid: bytes | None) -> Vote:
    return sign_vote(s, CHAIN, h, r, t, bid)


def proposal(s: Ed25519Signer, h: int, r: int, bid: bytes, vr: int = -1) -> Proposal:
    return sign_proposal(s, CHAIN, h, r, vr, bid)


def of_type(actions: list[Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


class Harness:
    """One machine under test (``me``) among ``n`` validators whose messages we forge."""

    def __init__(self, n: int = 4, me_is_proposer: bool = False, config: ConsensusConfig = CONFIG):
        self.signers = signers(n)
        self.vals = valset(self.signers)
        self.by_key = {s.public_key: s for s in self.signers}
        proposer = self.vals.proposer(1, 0)
        others = [s for s in self.signers if s.public_key != proposer]
        self.me = self.by_key[proposer] if me_is_proposer else others[0]
        self.peers = [s for s in self.signers if s is not self.me]
        self.app = SimApplication(self.me.public_key)
        self.machine = Tendermint(config, self.vals, self.me, self.app, 1)

    def proposer(self, h: int, r: int) -> Ed25519Signer:
        return self.by_key[self.vals.proposer(h, r)]

    def non_proposer_peers(self, h: int, r: int) -> list[Ed25519Signer]:
        return [s for s in self.peers if s.public_key != self.vals.proposer(h, r)]

"""A real ledger built in-process through several governance adoptions, each block with a
commit certificate by the validators of the membership in force at its height and a final
checkpoint by those that sign its size (docs/GOVERNANCE.md), for chain and audit tests.

Scenario (policy helpers' network: tax, social, health vote; audit is an auditor):
- M1: validator 3 (key V3) replaced by a new key V4 (a validator-key rotation);
- M2: tax's record key replaced by TAX_NEXT (a record-key rotation);
- M3: validator 1 removed, a new one (V5) added, approvals lowered to 2 (from here on,
  only two genesis validators sign: the genesis alone no longer verifies checkpoints).
Plain anchors are committed between the adoptions, by every agency's key in force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from consensus.certificate import CommitCertificate
from consensus.crypto import Ed25519Signer, sign_vote
from consensus.messages import VoteType
from ledger.blocks import Block
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.genesis import Validator, genesis_hash
from ledger.keys import SigningKey
from ledger.ledger_store import Ledger
from ledger.membership import Membership
from ledger.membership_chain import build_chain
from ledger.policy import PolicyBook
from ledger.records import Envelope, sign_record
from ledger.storage import Storage, StorageConfig
from proto import ledger_pb2
from tests.ledger.governance_helpers import (
    M0,
    TAX_NEXT,
    approve,
    new_key,
    next_block,
    nonce,
    propose,
    rotate_tax,
    with_approvals,
)
from tests.ledger.policy_helpers import GENESIS, KEYS, NET, RULES, VALIDATOR_KEYS

CHAIN_ID = genesis_hash(GENESIS.to_bytes())
V4 = new_key("validator.tax-next", 210)
V5 = new_key("validator.extra", 211)
ALL_VALIDATOR_KEYS = {k.verifier.key_hash: k for k in (*VALIDATOR_KEYS, V4, V5)}


def swap_validator(m: Membership, old: SigningKey, new: SigningKey) -> Membership:
    return replace(m, validators=tuple(
        Validator(new.verifier, v.power, v.agency, v.address) if v.key == old.verifier else v
        for v in m.validators))


def add_validator(m: Membership, key: SigningKey) -> Membership:
    return replace(m, validators=(*m.validators, Validator(key.verifier, 1, "health")))


M1 = swap_validator(M0, VALIDATOR_KEYS[3], V4)
M2 = rotate_tax(M1)
M3 = with_approvals(add_validator(replace(M2, validators=tuple(
    v for v in M2.validators if v.key != VALIDATOR_KEYS[1].verifier)), V5), 2)


def signing_keys(m: Membership) -> list[SigningKey]:
    return [ALL_VALIDATOR_KEYS[v.key.key_hash] for v in m.validators]


def certificate(block: Block, keys: Sequence[SigningKey]) -> bytes:
    votes = [sign_vote(Ed25519Signer(k.seed), CHAIN_ID, block.header.height, 0,
                       VoteType.PRECOMMIT, block.hash) for k in keys]
    return CommitCertificate.from_precommits(votes).to_bytes()


def tax_anchor(key: SigningKey) -> Envelope:
    body = ledger_pb2.RecordBody(network=NET, agency="tax", nonce=nonce(),
                                 anchor=ledger_pb2.Anchor(source="registry", version="1"))
    return sign_record(body, key)


def agency_anchor(name: str) -> Envelope:
    body = ledger_pb2.RecordBody(network=NET, agency=name, nonce=nonce(),
                                 anchor=ledger_pb2.Anchor(source="registry", version="1"))
    return sign_record(body, KEYS[name])


@dataclass
class GovLedger:
    path: Path
    storage: Storage = field(init=False)
    ledger: Ledger = field(init=False)
    book: PolicyBook = field(init=False)
    time_ms: int = 1_000

    def __post_init__(self) -> None:
        self.storage = Storage(self.path, StorageConfig(map_size=1 << 26, sync=False))
        self.ledger = Ledger(self.storage, CHAIN_ID)
        self.book = PolicyBook(self.ledger, RULES)

    def close(self) -> None:
        self.storage.close()

    def commit(self, envelopes: Sequence[Envelope],
               cert_keys: Sequence[SigningKey] | None = None,
               checkpoint_keys: Sequence[SigningKey] | None = None) -> Block:
        """Commit a block (certificate by the validators in force at its height and a
        checkpoint by those signing its size, unless told otherwise)."""
        self.time_ms += 100
        block = next_block(self.ledger, envelopes, self.time_ms)
        h = block.header
        gov = self.book.governance
        cert = certificate(block, cert_keys or signing_keys(gov.membership_at(h.height)))
        changes = self.book.changes_for(h.height, block.envelopes, h.time_ms,
                                        tree_size=h.tree_size)
        self.ledger.commit_block(block, cert, policy=changes)
        self.book.absorb(changes)
        signers = checkpoint_keys or signing_keys(gov.membership_for_size(h.tree_size))
        note = sign_checkpoint(Checkpoint(NET, h.tree_size, h.tree_root), signers)
        self.ledger.add_checkpoint(h.tree_size, note)
        return block

    def chain(self) -> bytes:
        return build_chain(self.ledger, NET, self.book.governance.history())


def build_governed(path: Path) -> GovLedger:
    """The scenario above; ``book.governance.history()`` has the three transitions."""
    g = GovLedger(path)
    g.commit([agency_anchor("tax"), agency_anchor("social")])
    p1 = propose("tax", M1)
    g.commit([p1, approve("social", p1)])
    g.commit([agency_anchor("health"), approve("health", p1), agency_anchor("tax")])  # M1
    g.commit([agency_anchor("social")])
    p2 = propose("social", M2, base=M1)
    g.commit([p2, approve("health", p2)])
    g.commit([approve("tax", p2)])  # M2 from the next block: tax signs with TAX_NEXT
    g.commit([tax_anchor(TAX_NEXT), agency_anchor("health")])
    p3 = propose("tax", M3, base=M2, key=TAX_NEXT)
    g.commit([p3, approve("social", p3), approve("health", p3)])  # M3
    g.commit([tax_anchor(TAX_NEXT), agency_anchor("social")])
    g.commit([agency_anchor("health")])
    assert [t.membership for t in g.book.governance.history()] == [M1, M2, M3]
    return g

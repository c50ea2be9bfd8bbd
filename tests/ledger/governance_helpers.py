"""Governance records and memberships for tests (the policy helpers' network and keys).

The genesis membership M_0 has agencies tax, social, health (voters) and audit (auditor),
four validators, and needs 3 approvals (the default: more than two thirds of 3 voters).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

from ledger import merkle
from ledger.blocks import Block, build_block
from ledger.genesis import Validator
from ledger.governance import approve_body, propose_body
from ledger.keys import SigningKey
from ledger.ledger_store import Ledger
from ledger.membership import Membership
from ledger.records import Envelope, Record, decode_body, sign_record
from tests.ledger.policy_helpers import GENESIS, KEYS, NET

M0 = Membership.from_genesis(GENESIS)
FAR_MS = 10_000_000
_nonces = itertools.count(1 << 40)


def next_block(ledger: Ledger, envelopes: Sequence[Envelope], time_ms: int) -> Block:
    """The block after ``ledger``'s head carrying ``envelopes`` (a fixed proposer)."""
    head = ledger.head
    parent = ledger.block(head.height).header if head.height else None
    frontier = merkle.Frontier.from_source(ledger.tree, head.tree_size)
    return build_block(NET, parent, head.hash, [e.raw for e in envelopes], frontier, time_ms,
                       b"\x00" * 32)


def nonce() -> bytes:
    return next(_nonces).to_bytes(16, "big")


def new_key(name: str, seed: int) -> SigningKey:
    return SigningKey.generate(name, lambda k: bytes([seed]) * k)


EXTRA_VALIDATOR = new_key("validator.extra", 200)
TAX_NEXT = new_key("tax", 201)
"""tax's next record key (rotation)."""


def with_validator(m: Membership, key: SigningKey = EXTRA_VALIDATOR,
                   approvals: int | None = None) -> Membership:
    return replace(m, validators=(*m.validators, Validator(key.verifier, 1, "tax",
                                                           "127.0.0.1:1")),
                   approvals=m.approvals if approvals is None else approvals)


def with_approvals(m: Membership, approvals: int) -> Membership:
    return replace(m, approvals=approvals)


def rotate_tax(m: Membership, key: SigningKey = TAX_NEXT) -> Membership:
    """tax's record key replaced by ``key`` (the old one is no longer trusted)."""
    agencies = tuple(replace(a, record_keys=(key.verifier,)) if a.name == "tax" else a
                     for a in m.agencies)
    return replace(m, agencies=agencies)


def demote(m: Membership, name: str) -> Membership:
    """``name`` becomes an auditor (no longer a voter); approvals capped to the voters."""
    agencies = tuple(replace(a, role="auditor") if a.name == name else a for a in m.agencies)
    voters = sum(1 for a in agencies if a.role == "agency")
    return replace(m, agencies=agencies, approvals=min(m.approvals, voters))


def propose(author: str, new: Membership, base: Membership | bytes = M0,
            expires_ms: int = FAR_MS, key: SigningKey | None = None,
            summary: str = "test change") -> Envelope:
    base_hash = base.hash if isinstance(base, Membership) else base
    body = propose_body(NET, author, nonce(), 0, new, base_hash, expires_ms, summary)
    return sign_record(body, key or KEYS[author])


def approve(author: str, proposal: Envelope | bytes, key: SigningKey | None = None
            ) -> Envelope:
    pid = proposal.record_id if isinstance(proposal, Envelope) else proposal
    return sign_record(approve_body(NET, author, nonce(), 0, pid), key or KEYS[author])


def record(envelope: Envelope, key: SigningKey | None = None) -> Record:
    """The decoded record (its signer taken from ``key`` or the agency's genesis key)."""
    body = decode_body(envelope.body)
    signer = (key or KEYS[body.agency]).verifier
    return Record(envelope, body, signer)

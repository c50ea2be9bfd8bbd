"""The node's per-height membership: validator sets, checkpoint signers per tree size,
the mempool's record keys, and the listeners that refresh pins and peers."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest

from ledger.checkpoint import Checkpoint
from ledger.errors import SignatureError
from ledger.genesis import Validator
from ledger.limits import Limits
from ledger.membership import Membership
from ledger.note import signature_for
from ledger.records import Envelope, sign_record
from node.checkpoints import CheckpointCollector
from node.memberships import NodeMemberships, StaticMembership, validator_set_of
from node.mempool import Mempool, MempoolConfig
from proto import ledger_pb2
from tests.ledger.governance_helpers import EXTRA_VALIDATOR, M0, TAX_NEXT, nonce, rotate_tax
from tests.ledger.policy_helpers import KEYS, NET, VALIDATOR_KEYS


def without_first_validator(m: Membership) -> Membership:
    return replace(m, validators=m.validators[1:])


M1 = replace(M0, validators=(*M0.validators, Validator(EXTRA_VALIDATOR.verifier, 1, "tax")))
"""M0 plus a fifth validator (adopted at height 3, tree size 10)."""
M2 = without_first_validator(M1)
"""M1 without VALIDATOR_KEYS[0] (adopted at height 5, tree size 20)."""


def scripted() -> StaticMembership:
    source = StaticMembership(M0)
    source.adopt(3, 10, M1)
    source.adopt(5, 20, M2)
    return source


def test_sets_per_height_and_signers_per_size() -> None:
    memberships = NodeMemberships(scripted())
    assert memberships.validator_set(2) == validator_set_of(M0)
    assert memberships.validator_set(3) == validator_set_of(M1)
    assert len(memberships.validator_set(5)) == 4
    assert VALIDATOR_KEYS[0].verifier.public_key not in memberships.validator_set(5)
    # T_1 = 10 is still signed by M0; 11..20 by M1; above 20 by M2
    assert [memberships.for_size(s) for s in (10, 11, 20, 21)] == [M0, M1, M1, M2]


def test_listeners_hear_of_each_change_once() -> None:
    source = StaticMembership(M0)
    memberships = NodeMemberships(source)
    heard: list[Membership] = []
    memberships.listeners.append(heard.append)
    memberships.refresh()
    assert heard == []
    source.adopt(2, 5, M1)
    memberships.refresh()
    memberships.refresh()
    assert heard == [M1]


class FakeTree:
    def __init__(self, size: int) -> None:
        self.size = size

    def root(self, size: int) -> bytes:
        return hashlib.sha256(b"root %d" % size).digest()


class FakeLedger:
    def __init__(self, size: int) -> None:
        self.tree = FakeTree(size)
        self.notes: dict[int, bytes] = {}

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        return None

    def add_checkpoint(self, size: int, note: bytes) -> None:
        self.notes[size] = note

    def add_checkpoints(self, notes: list[tuple[int, bytes]]) -> None:
        self.notes.update(notes)


class FakePeers:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def broadcast(self, message: Any, bulk: bool = False) -> None:
        self.sent.append(message)


class NullLog:
    def warning(self, *args: Any, **kwargs: Any) -> None:
        pass


def line(key: Any, size: int) -> str:
    text = Checkpoint(NET, size, FakeTree(0).root(size)).to_text()
    return signature_for(text, key).to_line()


def collector(size: int, keys: list[Any]) -> tuple[CheckpointCollector, FakeLedger, FakePeers]:
    ledger, peers = FakeLedger(size), FakePeers()
    memberships = NodeMemberships(scripted())
    c = CheckpointCollector(NET, memberships.for_size, ledger, peers,  # type: ignore[arg-type]
                            keys, NullLog())
    return c, ledger, peers


def test_a_removed_validators_signature_no_longer_counts() -> None:
    c, ledger, _ = collector(30, [])
    v0, v1, v2 = VALIDATOR_KEYS[:3]
    # size 25 is signed by M2 (threshold 3 of 4, without v0): v0's line is refused
    assert not c.add(25, line(v0, 25))
    assert c.add(25, line(v1, 25)) and c.add(25, line(v2, 25))
    assert 25 not in ledger.notes  # v0 + two others is not final
    assert c.add(25, line(EXTRA_VALIDATOR, 25))
    assert 25 in ledger.notes
    # size 8 (before the changes) is still signed by M0, v0 included: 3 of 4
    for key in (v0, v1, v2):
        assert c.add(8, line(key, 8))
    assert 8 in ledger.notes
    # the new validator does not sign sizes of M0
    assert not c.add(9, line(EXTRA_VALIDATOR, 9))


def test_m1_needs_four_of_five() -> None:
    c, ledger, _ = collector(30, [])
    for key in VALIDATOR_KEYS[:3]:
        c.add(15, line(key, 15))
    assert 15 not in ledger.notes
    c.add(15, line(EXTRA_VALIDATOR, 15))
    assert 15 in ledger.notes


def test_a_node_signs_with_its_key_of_that_size_and_not_an_older_final_size() -> None:
    old, new = VALIDATOR_KEYS[0], EXTRA_VALIDATOR  # this node rotates from old to new
    c, _, peers = collector(30, [old, new])
    c.sign_and_share(8)
    assert [m.checkpoint_signature.signature_line for m in peers.sent] == [line(old, 8)]
    peers.sent.clear()
    c.sign_and_share(15)  # M1: both keys are validators there; the first one found signs
    assert len(peers.sent) == 1
    peers.sent.clear()
    c.sign_and_share(25)  # M2 has only the new key
    assert [m.checkpoint_signature.signature_line for m in peers.sent] == [line(new, 25)]
    for key in VALIDATOR_KEYS[1:3]:
        c.add(25, line(key, 25))
    assert c.final_size == 25
    peers.sent.clear()
    c.sign_and_share(20)  # a final size of an older membership (M1): not signed again
    assert peers.sent == []
    c.sign_and_share(25)  # an empty block under the same membership repeats the line
    assert [m.checkpoint_signature.signature_line for m in peers.sent] == [line(new, 25)]


def anchor_by(key: Any, agency: str = "tax") -> Envelope:
    body = ledger_pb2.RecordBody(network=NET, agency=agency, nonce=nonce(),
                                 anchor=ledger_pb2.Anchor(source="registry", version="1"))
    return sign_record(body, key)


def test_a_keyring_change_drops_pending_records_of_removed_keys() -> None:
    pool = Mempool(NET, M0.keyring(), Limits(), MempoolConfig(), lambda rid: None)
    old = anchor_by(KEYS["tax"])
    other = anchor_by(KEYS["social"], "social")
    pool.add(old.raw)
    pool.add(other.raw)
    assert len(pool) == 2
    rotated = rotate_tax(M0)
    pool.set_keyring(rotated.keyring())
    assert len(pool) == 1 and pool.size_bytes == len(other.raw)  # tax's record left
    assert pool.facts(other.leaf_hash) is not None and pool.facts(old.leaf_hash) is None
    with pytest.raises(SignatureError):
        pool.add(anchor_by(KEYS["tax"]).raw)
    new = anchor_by(TAX_NEXT)
    pool.add(new.raw)
    assert len(pool) == 2
    assert pool.facts(new.leaf_hash) is not None

"""LedgerApp enforces governance: block validity, proposals leaving refused records out,
and every record checked with the keys of the membership in force at its block's height
(committed or still staged)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.blocks import Block
from ledger.errors import SignatureError
from ledger.records import Envelope, Keyring, sign_record
from proto import ledger_pb2
from tests.ledger.governance_helpers import (
    M0,
    TAX_NEXT,
    approve,
    nonce,
    propose,
    rotate_tax,
)
from tests.ledger.policy_helpers import KEYS, NET, anchor
from tests.node.test_app_policy import Rig
from tests.node.test_app_policy import _open as open_rig


def _open(path: Path, clock: list[int]) -> Rig:
    # The mempool knows tax's next key too (as a node would once it learns of it): which
    # key counts at a height is the membership's business, checked in block validity.
    keys = Keyring(k.verifier for k in KEYS.values())
    keys.add(TAX_NEXT.verifier)
    return open_rig(path, clock, keys, sync=False)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = _open(tmp_path, [1_100])
    yield r
    r.storage.close()


def _tax_next_anchor() -> Envelope:
    body = ledger_pb2.RecordBody(network=NET, agency="tax", nonce=nonce(),
                                 anchor=ledger_pb2.Anchor(source="registry", version="2"))
    return sign_record(body, TAX_NEXT)


def test_blocks_breaking_governance_rules_are_invalid(rig: Rig) -> None:
    p = propose("tax", rotate_tax(M0), expires_ms=1_500)
    rig.commit(rig.block([p, approve("social", p)], 1_100))
    cases = [
        ([approve("social", p)], 1_200, "social already approved it"),
        ([approve("health", p)], 1_500, "the proposal expired at"),
        ([approve("audit", p)], 1_200, "audit is an auditor"),
        ([propose("social", rotate_tax(M0), base=rotate_tax(M0))], 1_200, "is stale"),
    ]
    for records, time_ms, message in cases:
        block = rig.block(records, time_ms)
        assert rig.app.validate_block(2, block.to_bytes()) is False
        reason = rig.reason(block)
        assert reason is not None and message in reason, reason
    good = rig.block([approve("health", p)], 1_200)
    assert rig.app.validate_block(2, good.to_bytes()) is True


def test_proposal_leaves_out_refused_governance_records_and_tells_the_submitter(
        rig: Rig) -> None:
    p = propose("tax", rotate_tax(M0), expires_ms=1_300)
    rig.commit(rig.block([p], 1_100))
    late, fine = approve("social", p), anchor()
    rig.app.mempool.add(late.raw)
    rig.app.mempool.add(fine.raw)
    rig.clock[0] = 1_300  # the proposal expired while the approval waited
    raw = rig.app.propose_block(2, 0)
    assert list(Block.from_bytes(raw).envelopes) == [fine.raw]
    assert [rid for rid, _ in rig.refused] == [late.record_id]
    assert f"proposal {p.record_id.hex()[:16]}" in rig.refused[0][1]
    assert "expired" in rig.refused[0][1]


def test_keys_of_the_membership_in_force_count_from_the_next_block_even_when_staged(
        tmp_path: Path) -> None:
    rig = _open(tmp_path, [1_500])
    rotated = rotate_tax(M0)
    p = propose("tax", rotated)
    rig.commit(rig.block([p, approve("social", p)], 1_100))
    early = rig.block([_tax_next_anchor()], 1_150)
    assert "not a record key of tax" in (rig.reason(early) or "")
    adopting = rig.block([approve("health", p), anchor("tax")], 1_200)  # old key: still M0
    assert rig.reason(adopting) is None
    rig.decide(adopting)  # decided, not yet written: the next block sees M1 all the same
    assert rig.app.book.governance.membership() == M0
    state = rig.app.governance_state()
    assert state.current == rotated and state.at_height(3) == rotated
    assert state.transitions[0].tree_size == 4
    old = rig.block([anchor("tax")], 1_300)
    # checked with the staged membership's record keys (the mempool still holds M0's)
    with pytest.raises(SignatureError, match="not a known key"):
        rig.reason(old)
    assert not rig.app.validate_block(3, old.to_bytes())
    new = rig.block([_tax_next_anchor()], 1_300)
    assert rig.reason(new) is None
    rig.app.commit_staged(2, b"cert")
    assert rig.app.book.governance.membership() == rotated
    assert rig.app.book.rules.keyring.get(TAX_NEXT.verifier.key_hash) is not None
    rig.commit(new)
    rig.storage.close()
    again = _open(tmp_path, [1_500])  # restart: the membership from the governance db
    assert again.app.book.governance.membership_at(3) == rotated
    assert again.app.book.governance.membership_at(2) == M0
    assert "not a record key" in (again.reason(again.block([anchor("tax")], 1_400)) or "")
    again.storage.close()


def test_expired_proposals_are_pruned_by_the_block_whose_time_passes_them(rig: Rig) -> None:
    p = propose("tax", rotate_tax(M0), expires_ms=1_300)
    rig.commit(rig.block([p], 1_100))
    rig.commit(rig.block([], 1_200))  # decided without a cached view: changes_for
    assert list(rig.app.governance_state().pending) == [p.record_id]
    rig.clock[0] = 1_300  # this node proposes the block that passes the expiry
    raw = rig.app.propose_block(3, 0)
    block = Block.from_bytes(raw)
    assert block.header.time_ms == 1_300 and block.envelopes == ()
    rig.app.decided(3, block.hash, raw)  # its cached view prunes with the header time
    assert rig.app.governance_state().pending == {}  # staged already
    rig.app.commit_staged(3, b"cert")
    assert rig.app.book.governance.pending() == [] and rig.app.governance_state().pending == {}

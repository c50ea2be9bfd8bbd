"""The explorer across membership changes: the membership in force, the adoptions, and
each checkpoint checked with the validators that sign its size."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ledger.genesis import Genesis
from ledger.governance import GovernanceState, Transition
from ledger.membership import Membership
from node.explorer.views import Explorer
from tests.explorer.ledger_fixture import build


def test_status_and_checkpoints_follow_the_membership(tmp_path: Path) -> None:
    built, ledger = build(tmp_path / "net")
    try:
        m0 = Membership.from_genesis(Genesis.from_bytes(built.genesis_bytes))
        m1 = replace(m0, validators=m0.validators[:3])  # one validator removed
        size = ledger.tree.size
        # adopted "before" the last checkpoint: its size is now signed by m1's three
        t1 = Transition(1, 2, size - 1, m1, b"\x01" * 32, (), ("tax-agency",), "shrink")
        state = GovernanceState(m0, (t1,))
        explorer = Explorer(ledger, built.genesis_bytes, governance=lambda: state)
        status = explorer.status()
        assert len(status["validators"]) == 3 and status["threshold"] == m1.threshold
        assert status["adoptions"][0]["summary"] == "shrink"
        cp = explorer.checkpoint()
        assert cp["size"] == size and cp["threshold"] == m1.threshold
        removed = m0.validators[3].agency or m0.validators[3].key.name
        assert removed and len(cp["signed_by"] + cp["not_signed_by"]) == 3
        assert removed not in cp["signed_by"] + cp["not_signed_by"]
        # without governance the genesis holds: four validators, threshold 3
        plain = Explorer(ledger, built.genesis_bytes)
        assert len(plain.status()["validators"]) == 4 and plain.checkpoint()["threshold"] == 3
    finally:
        ledger.storage.close()

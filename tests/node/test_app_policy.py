"""LedgerApp enforces the sharing policy: block validity, staged overlay, proposals, time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.blocks import Block, build_block
from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.limits import Limits
from ledger.policy import PolicyBook
from ledger.records import Envelope, Keyring
from ledger.storage import Storage, StorageConfig
from node.app import BlockPolicy, LedgerApp
from node.mempool import Mempool, MempoolConfig
from tests.ledger.policy_helpers import GENESIS, NET, RULES, agreement, anchor, event, revocation

PROPOSER = b"\x00" * 32


@dataclass
class Rig:
    storage: Storage
    app: LedgerApp
    clock: list[int]
    refused: list[tuple[bytes, str]] = field(default_factory=list)

    def block(self, envelopes: list[Envelope], time_ms: int) -> Block:
        """A block on the current tip, as any (maybe Byzantine) proposer could build it."""
        tip = self.app._tip
        return build_block(NET, tip.header, tip.hash, [e.raw for e in envelopes],
                           tip.frontier.copy(), time_ms, PROPOSER)

    def decide(self, block: Block) -> None:
        height = block.header.height
        self.app.decided(height, block.hash, block.to_bytes())

    def commit(self, block: Block) -> None:
        self.decide(block)
        self.app.commit_staged(block.header.height, b"cert")

    def reason(self, block: Block) -> str | None:
        return self.app._check(block.header.height, block)


def _open(path: Path, clock: list[int], keyring: Keyring | None = None,
          sync: bool = True) -> Rig:
    """A LedgerApp on a store at ``path``; ``keyring``: the mempool's record keys (default:
    the genesis ones)."""
    storage = Storage(path, StorageConfig(map_size=1 << 26, sync=sync))
    ledger = Ledger(storage, genesis_hash(GENESIS.to_bytes()))
    mempool = Mempool(NET, keyring if keyring is not None else RULES.keyring, Limits(),
                      MempoolConfig(), ledger.index_of)
    refused: list[tuple[bytes, str]] = []
    app = LedgerApp(ledger, mempool, NET, PROPOSER,
                    BlockPolicy(idle_block_interval_ms=0, max_time_ahead_ms=5_000), Limits(),
                    PolicyBook(ledger, RULES), clock_ms=lambda: clock[0],
                    on_refused=refused.extend)
    return Rig(storage, app, clock, refused)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = _open(tmp_path, [1_100])
    yield r
    r.storage.close()


def test_blocks_with_uncovered_events_are_invalid(rig: Rig,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    a = agreement()  # tax -> social, income, benefits, valid [1000, 2000)
    rig.commit(rig.block([a], 1_100))
    rig.clock[0] = 2_100
    cases = [
        ([event(b"\x03" * 32)], 1_500, "not on the ledger"),
        ([event(a.record_id, dataset="health")], 1_500, "covers only"),
        ([event(a.record_id)], 2_000, "expired at"),
        ([revocation(a.record_id), event(a.record_id)], 1_500, "was revoked at"),
        ([anchor(), event(a.record_id, author="health")], 1_500, "only the provider or"),
        ([anchor("audit")], 1_500, "auditor"),
    ]
    for records, time_ms, message in cases:
        block = rig.block(records, time_ms)
        assert rig.app.validate_block(2, block.to_bytes()) is False
        reason = rig.reason(block)
        assert reason is not None and message in reason, reason
        assert reason.startswith("sharing policy: record ")
        logged = capsys.readouterr().out  # the refusal is logged with its reason
        assert "proposed block is invalid" in logged and message in logged
    good = rig.block([event(a.record_id), anchor()], 1_500)
    assert rig.app.validate_block(2, good.to_bytes()) is True


def test_next_block_sees_staged_agreement_and_restart_keeps_it(tmp_path: Path) -> None:
    rig = _open(tmp_path, [1_500])
    a = agreement()
    first = rig.block([a], 1_100)
    rig.decide(first)  # decided, not yet written
    assert rig.app.ledger.head.height == 0 and rig.app.book.agreements == {}
    second = rig.block([event(a.record_id)], 1_200)
    assert rig.reason(second) is None
    rig.decide(second)
    third = rig.block([revocation(a.record_id), event(a.record_id)], 1_300)
    assert "was revoked" in (rig.reason(third) or "")
    rig.app.commit_staged(1, b"cert")
    rig.app.commit_staged(2, b"cert")
    state = rig.app.book.agreements[a.record_id]
    assert state.revoked_at_ms is None and rig.app.book.height == 2
    rig.storage.close()
    again = _open(tmp_path, [1_500])  # restart: the same state from the policy sub-database
    assert again.app.book.agreements == {a.record_id: state} and again.app.book.height == 2
    assert again.reason(again.block([event(a.record_id)], 1_300)) is None
    again.storage.close()


def test_block_time_far_ahead_of_the_clock_is_refused_until_the_clock_catches_up(
        rig: Rig) -> None:
    block = rig.block([anchor()], 1_100 + 5_001)
    assert rig.app.validate_block(1, block.to_bytes()) is False
    rig.clock[0] = 1_101  # not remembered as invalid: the same block is judged again
    assert rig.app.validate_block(1, block.to_bytes()) is True


def test_proposal_leaves_out_events_whose_agreement_expired_while_waiting(rig: Rig) -> None:
    a = agreement(valid=(1_000, 1_400))
    rig.commit(rig.block([a], 1_100))
    late, fine = event(a.record_id), anchor()
    rig.app.mempool.add(late.raw)
    rig.app.mempool.add(fine.raw)
    rig.clock[0] = 1_400  # the agreement is over by the time this node proposes
    raw = rig.app.propose_block(2, 0)
    block = Block.from_bytes(raw)
    assert list(block.envelopes) == [fine.raw] and block.header.time_ms == 1_400
    assert [rid for rid, _ in rig.refused] == [late.record_id]
    assert "expired at" in rig.refused[0][1]
    assert len(rig.app.mempool) == 1  # the anchor waits for its block; the event is gone
    assert rig.app.validate_block(2, raw) is True

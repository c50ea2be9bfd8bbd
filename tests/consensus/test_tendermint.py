"""Scripted runs of one state machine against forged peers (Algorithm 1, rule by rule)."""

from __future__ import annotations

from dataclasses import replace

from consensus.certificate import CommitCertificate, check_certificate
from consensus.events import (
    Action,
    BlockReceived,
    BroadcastProposal,
    BroadcastVote,
    CommitBlock,
    CommitReceived,
    PersistSafety,
    ProposalReceived,
    ReportEvidence,
    RequestBlock,
    SafetyState,
    ScheduleTimeout,
    SendCommit,
    Timeout,
    TimeoutExpired,
    TimeoutKind,
    VoteReceived,
)
from consensus.evidence import verify_evidence
from consensus.messages import Vote, VoteType
from consensus.sim.app import block_id_of
from consensus.tendermint import Tendermint
from tests.consensus.helpers import CHAIN, CONFIG, Harness, block, of_type, proposal, vote

PV, PC = VoteType.PREVOTE, VoteType.PRECOMMIT
A, A_BYTES = block(1, "a")
B, B_BYTES = block(1, "b")


def my_votes(actions: list[Action]) -> list[Vote]:
    return [a.vote for a in of_type(actions, BroadcastVote)]


def feed_votes(h: Harness, r: int, t: VoteType, bid: bytes | None, count: int = 2) -> list[Action]:
    out: list[Action] = []
    for peer in h.peers[:count]:
        out += h.machine.handle(VoteReceived(vote(peer, 1, r, t, bid), 10))
    return out


def propose(h: Harness, r: int, bid: bytes, data: bytes, vr: int = -1) -> list[Action]:
    p = proposal(h.proposer(1, r), 1, r, bid, vr)
    return h.machine.handle(ProposalReceived(p, data, 5))


def lock_on_a_in_round_0(h: Harness) -> None:
    h.machine.start(0)
    propose(h, 0, A, A_BYTES)
    acts = feed_votes(h, 0, PV, A)
    assert [(v.vote_type, v.block_id) for v in my_votes(acts)] == [(PC, A)]


def to_round_1(h: Harness) -> None:
    feed_votes(h, 0, PC, None)
    h.machine.handle(TimeoutExpired(Timeout(TimeoutKind.PRECOMMIT, 1, 0), 20))
    assert h.machine.round == 1


def test_happy_path_decides_with_a_valid_certificate() -> None:
    h = Harness()
    start = h.machine.start(0)
    kinds = {a.timeout.kind for a in of_type(start, ScheduleTimeout)}
    assert kinds == {TimeoutKind.PROPOSE, TimeoutKind.RETRY}
    acts = propose(h, 0, A, A_BYTES)
    assert [(v.vote_type, v.block_id) for v in my_votes(acts)] == [(PV, A)]  # line 24
    feed_votes(h, 0, PV, A)
    acts = feed_votes(h, 0, PC, A)
    commit = of_type(acts, CommitBlock)[0]
    assert (commit.height, commit.block_id, commit.block) == (1, A, A_BYTES)
    check_certificate(commit.certificate, h.vals, CHAIN)
    assert h.machine.height == 2 and h.machine.round == 0


def test_every_own_vote_is_persisted_before_it_is_released() -> None:
    h = Harness()
    actions = h.machine.start(0) + propose(h, 0, A, A_BYTES)
    actions += feed_votes(h, 0, PV, A) + feed_votes(h, 0, PC, A)
    persisted = (-1, -1, -1)
    released = 0
    for action in actions:
        if isinstance(action, PersistSafety):
            persisted = action.state.signed_position
        elif isinstance(action, BroadcastVote) and action.vote.validator == h.me.public_key:
            v = action.vote
            assert persisted >= (v.height, v.round, int(v.vote_type))
            released += 1
    assert released == 2


def test_invalid_block_gets_a_nil_prevote() -> None:
    h = Harness()
    h.machine.start(0)
    bad = b"INVALID|1|0|1|x"
    acts = propose(h, 0, block_id_of(bad), bad)
    assert [v.block_id for v in my_votes(acts)] == [None]  # line 26


def test_block_bytes_not_matching_the_signed_id_are_ignored() -> None:
    h = Harness()
    h.machine.start(0)
    assert propose(h, 0, A, B_BYTES) == []
    assert my_votes(propose(h, 0, A, A_BYTES))[0].block_id == A


def test_lock_makes_a_node_prevote_nil_for_another_value() -> None:
    h = Harness()
    lock_on_a_in_round_0(h)
    to_round_1(h)
    assert [v.block_id for v in my_votes(propose(h, 1, B, B_BYTES))] == [None]  # line 23


def test_lock_rule_can_be_switched_off_only_by_explicit_test_flag() -> None:
    h = Harness(config=replace(CONFIG, test_only_disable_lock_rule=True))
    lock_on_a_in_round_0(h)
    to_round_1(h)
    assert [v.block_id for v in my_votes(propose(h, 1, B, B_BYTES))] == [B]


def test_proposal_with_valid_round_needs_its_pol() -> None:
    h = Harness()
    h.machine.start(0)
    h.machine.handle(TimeoutExpired(Timeout(TimeoutKind.PROPOSE, 1, 0), 300))  # prevote nil
    to_round_1(h)
    assert propose(h, 1, A, A_BYTES, vr=0) == []  # line 28 needs 2f+1 prevotes for (0, A)
    acts: list[Action] = []
    for peer in h.peers:
        acts += h.machine.handle(VoteReceived(vote(peer, 1, 0, PV, A), 30))
    assert [v.block_id for v in my_votes(acts) if v.round == 1] == [A]  # line 30


def test_valid_round_not_below_round_is_ignored() -> None:
    h = Harness()
    h.machine.start(0)
    assert my_votes(propose(h, 0, A, A_BYTES, vr=0)) == []


def test_f_plus_one_messages_from_a_higher_round_skip_to_it() -> None:
    h = Harness()
    h.machine.start(0)
    h.machine.handle(VoteReceived(vote(h.peers[0], 1, 3, PV, None), 1))
    assert h.machine.round == 0
    h.machine.handle(VoteReceived(vote(h.peers[1], 1, 3, PV, None), 2))
    assert h.machine.round == 3  # lines 55-56


def test_timeouts_grow_with_the_round() -> None:
    h = Harness()
    h.machine.start(0)
    h.machine.handle(VoteReceived(vote(h.peers[0], 1, 4, PV, None), 0))
    acts = h.machine.handle(VoteReceived(vote(h.peers[1], 1, 4, PV, None), 0))
    deadlines = [a.deadline for a in of_type(acts, ScheduleTimeout)]
    assert deadlines == [CONFIG.timeout_propose_ms + 4 * CONFIG.timeout_delta_ms]


def test_decision_without_the_block_fetches_it() -> None:
    h = Harness()
    h.machine.start(0)
    acts = feed_votes(h, 0, PC, A, count=3)
    assert of_type(acts, RequestBlock) == [RequestBlock(1, A)]
    assert h.machine.handle(BlockReceived(1, A, B_BYTES, 40)) == []  # wrong bytes
    acts = h.machine.handle(BlockReceived(1, A, A_BYTES, 41))
    assert [c.block_id for c in of_type(acts, CommitBlock)] == [A]


def test_equivocating_voter_is_reported_once_with_verifiable_evidence() -> None:
    h = Harness()
    h.machine.start(0)
    peer = h.peers[0]
    h.machine.handle(VoteReceived(vote(peer, 1, 0, PV, A), 1))
    acts = h.machine.handle(VoteReceived(vote(peer, 1, 0, PV, None), 2))
    acts += h.machine.handle(VoteReceived(vote(peer, 1, 0, PV, B), 3))
    reports = of_type(acts, ReportEvidence)
    assert len(reports) == 1 and reports[0].evidence.validator == peer.public_key
    verify_evidence(reports[0].evidence, h.vals, CHAIN)


def test_restart_never_signs_a_conflicting_vote() -> None:
    h = Harness()
    h.machine.start(0)
    acts = propose(h, 0, A, A_BYTES)
    state = SafetyState.from_bytes(of_type(acts, PersistSafety)[-1].state.to_bytes())
    first = my_votes(acts)[0]
    restarted = Tendermint(CONFIG, h.vals, h.me, h.app, 1, state)
    restarted.start(100)
    other = proposal(h.proposer(1, 0), 1, 0, B)  # the proposer equivocates after our crash
    acts = restarted.handle(ProposalReceived(other, B_BYTES, 101))
    assert my_votes(acts) == [first]  # the stored vote again, never a vote for B
    assert of_type(acts, PersistSafety) == []


def test_restart_keeps_the_lock() -> None:
    h = Harness()
    lock_on_a_in_round_0(h)
    state = h.machine.safety_state()
    assert (state.locked_round, state.locked_block_id) == (0, A)
    h.machine = Tendermint(CONFIG, h.vals, h.me, h.app, 1, SafetyState.from_bytes(state.to_bytes()))
    h.machine.start(50)
    to_round_1(h)
    assert [v.block_id for v in my_votes(propose(h, 1, B, B_BYTES))] == [None]


def test_proposer_persists_then_proposes_then_prevotes_its_block() -> None:
    h = Harness(me_is_proposer=True)
    acts = h.machine.start(0)
    kinds = [type(a).__name__ for a in acts if not isinstance(a, ScheduleTimeout)]
    assert kinds == ["PersistSafety", "BroadcastProposal", "PersistSafety", "BroadcastVote"]
    sent = of_type(acts, BroadcastProposal)[0]
    assert my_votes(acts)[0].block_id == sent.proposal.block_id


def test_commit_from_a_peer_is_adopted_and_lagging_peers_are_helped() -> None:
    h = Harness()
    h.machine.start(0)
    cert = CommitCertificate.from_precommits(vote(p, 1, 2, PC, A) for p in h.peers)
    acts = h.machine.handle(CommitReceived(cert, A_BYTES, 10))
    assert of_type(acts, CommitBlock) == [CommitBlock(1, A, A_BYTES, cert)]
    laggard = h.peers[0]
    acts = h.machine.handle(VoteReceived(vote(laggard, 1, 0, PV, None), 20))
    assert of_type(acts, SendCommit) == [SendCommit(laggard.public_key, 1)]
    again = h.machine.handle(VoteReceived(vote(laggard, 1, 0, PC, None), 21))
    assert of_type(again, SendCommit) == []  # rate limited to one per retry interval


def test_next_height_messages_are_buffered_and_replayed() -> None:
    h = Harness()
    h.machine.start(0)
    a2, a2_bytes = block(2, "a")
    p2 = proposal(h.proposer(2, 0), 2, 0, a2)
    assert h.machine.handle(ProposalReceived(p2, a2_bytes, 1)) == []
    propose(h, 0, A, A_BYTES)
    feed_votes(h, 0, PV, A)
    acts = feed_votes(h, 0, PC, A)
    assert of_type(acts, CommitBlock)
    if h.machine.height == 2 and h.proposer(2, 0) != h.me:
        assert [v.block_id for v in my_votes(acts) if v.height == 2] == [a2]

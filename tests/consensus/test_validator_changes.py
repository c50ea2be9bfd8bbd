"""Validator sets per height: followers, joining and leaving at a height, key rotation."""

from __future__ import annotations

from consensus.certificate import check_certificate
from consensus.crypto import Ed25519Signer
from consensus.events import (
    Action,
    BroadcastProposal,
    BroadcastVote,
    CommitBlock,
    PersistSafety,
    ProposalReceived,
    VoteReceived,
)
from consensus.messages import VoteType
from consensus.sim import Simulation, make_scenario, run_seed
from consensus.sim.app import SimApplication
from consensus.sim.world import SetSchedule
from consensus.tendermint import Tendermint
from consensus.validators import ValidatorSet
from tests.consensus.helpers import CONFIG, block, of_type, proposal, signers, valset, vote

PV, PC = VoteType.PREVOTE, VoteType.PRECOMMIT


def decide_height(machine: Tendermint, voters: list[Ed25519Signer], height: int,
                  tag: str = "a") -> list[Action]:
    """Feed the height's proposal and 2f+1 prevotes and precommits from ``voters``."""
    vals = machine.validators
    by_key = {s.public_key: s for s in voters}
    bid, data = block(height, tag)
    proposer = by_key[vals.proposer(height, 0)]
    acts = machine.handle(ProposalReceived(proposal(proposer, height, 0, bid), data, height))
    for kind in (PV, PC):
        for s in voters:
            if s.public_key != machine_key(machine):
                acts += machine.handle(VoteReceived(vote(s, height, 0, kind, bid), height))
    return acts


def machine_key(machine: Tendermint) -> bytes | None:
    return None if not machine.voting else machine._me  # the signing key


def own_messages(acts: list[Action], key: bytes) -> list[Action]:
    return [a for a in acts
            if (isinstance(a, BroadcastVote) and a.vote.validator == key)
            or isinstance(a, (BroadcastProposal, PersistSafety))]


def test_a_follower_decides_on_precommits_and_never_signs() -> None:
    keys = signers(5)
    vals, outsider = valset(keys[:4]), keys[4]
    machine = Tendermint(CONFIG, vals, outsider, SimApplication(outsider.public_key), 1)
    assert not machine.voting
    acts = machine.start(0) + decide_height(machine, keys[:4], 1)
    assert own_messages(acts, outsider.public_key) == []
    commit = of_type(acts, CommitBlock)[0]
    check_certificate(commit.certificate, vals, CONFIG.chain_id)
    assert machine.height == 2


def test_a_follower_without_any_key_follows() -> None:
    keys = signers(4)
    machine = Tendermint(CONFIG, valset(keys), None, SimApplication(b"\0" * 32), 1)
    acts = machine.start(0) + decide_height(machine, keys, 1)
    assert of_type(acts, CommitBlock) and not of_type(acts, PersistSafety)


def test_a_node_votes_from_the_height_its_key_joins_the_set() -> None:
    keys = signers(5)
    joiner = keys[4]
    schedule = SetSchedule(valset(keys[:4]), [(2, valset(keys))])
    machine = Tendermint(CONFIG, schedule, joiner, SimApplication(joiner.public_key), 1)
    acts = machine.start(0) + decide_height(machine, keys[:4], 1)
    assert own_messages(acts, joiner.public_key) == []
    assert machine.height == 2 and machine.voting and machine.validators == valset(keys)
    acts = decide_height(machine, keys, 2)
    mine = [a.vote for a in acts
            if isinstance(a, BroadcastVote) and a.vote.validator == joiner.public_key]
    assert [(v.height, v.vote_type) for v in mine if v.height == 2] == [(2, PV), (2, PC)]
    assert of_type(acts, CommitBlock)[0].height == 2


def test_a_removed_validator_stops_voting_and_its_votes_stop_counting() -> None:
    keys = signers(5)
    leaver = keys[0]
    schedule = SetSchedule(valset(keys[:4]), [(2, valset(keys[1:]))])
    machine = Tendermint(CONFIG, schedule, leaver, SimApplication(leaver.public_key), 1)
    machine.start(0)
    decide_height(machine, keys[:4], 1)
    assert machine.height == 2 and not machine.voting
    # At height 2 the old set's precommits (3 of them, with the leaver's key) must not
    # decide: only keys[1:] count, whose quorum is 3 of 4.
    bid, data = block(2)
    vals2 = machine.validators
    prop = proposal(next(s for s in keys if s.public_key == vals2.proposer(2, 0)), 2, 0, bid)
    acts = machine.handle(ProposalReceived(prop, data, 5))
    for s in (keys[0], keys[1], keys[2]):  # keys[0] is out: 2 of the 3 needed
        acts += machine.handle(VoteReceived(vote(s, 2, 0, PC, bid), 6))
    assert not of_type(acts, CommitBlock) and machine.height == 2
    acts = machine.handle(VoteReceived(vote(keys[3], 2, 0, PC, bid), 7))
    assert of_type(acts, CommitBlock)[0].height == 2
    assert own_messages(acts, leaver.public_key) == []


def test_buffered_next_height_votes_are_rechecked_against_the_new_set() -> None:
    keys = signers(5)
    schedule = SetSchedule(valset(keys[:4]), [(2, valset(keys[1:]))])
    me = next(s for s in keys[1:4] if s.public_key != valset(keys[:4]).proposer(1, 0))
    machine = Tendermint(CONFIG, schedule, me, SimApplication(me.public_key), 1)
    machine.start(0)
    bid2, _ = block(2)
    # keys[0] precommits at height 2 early: buffered under the height-1 set, then
    # ignored, since it is no validator at height 2.
    machine.handle(VoteReceived(vote(keys[0], 2, 0, PC, bid2), 1))
    decide_height(machine, keys[:4], 1)
    assert machine.height == 2
    acts: list[Action] = []
    for s in [k for k in keys[1:] if k is not me][:2]:
        acts += machine.handle(VoteReceived(vote(s, 2, 0, PC, bid2), 9))
    assert not of_type(acts, CommitBlock)  # 2 others + no keys[0]: below 3 of 4


def test_key_rotation_signs_with_the_key_in_the_height_set() -> None:
    keys = signers(4)
    old, new = keys[0], Ed25519Signer(b"n" * 32)
    rotated = ValidatorSet.equal([new.public_key, *(s.public_key for s in keys[1:])])
    schedule = SetSchedule(valset(keys), [(2, rotated)])
    machine = Tendermint(CONFIG, schedule, [old, new], SimApplication(old.public_key), 1)
    acts = machine.start(0) + decide_height(machine, keys, 1)
    signed_h1 = {a.vote.validator for a in acts
                 if isinstance(a, BroadcastVote) and a.vote.height == 1
                 and a.vote.validator in (old.public_key, new.public_key)}
    assert signed_h1 == {old.public_key}
    acts = decide_height(machine, [new, *keys[1:]], 2)
    signed_h2 = {a.vote.validator for a in acts
                 if isinstance(a, BroadcastVote) and a.vote.height == 2
                 and a.vote.validator in (old.public_key, new.public_key)}
    assert signed_h2 == {new.public_key}
    assert of_type(acts, CommitBlock)[0].height == 2


def test_two_own_keys_in_one_set_sign_with_the_first_only() -> None:
    """A node holding two keys of one set (a rotation done in two steps: add the next key,
    then remove the old one) casts one validator's votes, never two, and keeps deciding."""
    keys = signers(4)
    both = keys[:2]
    machine = Tendermint(CONFIG, valset(keys), both, SimApplication(both[0].public_key), 1)
    acts = machine.start(0) + decide_height(machine, keys, 1)
    signed = {a.vote.validator for a in acts if isinstance(a, BroadcastVote)}
    assert both[0].public_key in signed and both[1].public_key not in signed
    assert of_type(acts, CommitBlock)[0].height == 1


def test_set_change_simulations_keep_safety_and_liveness() -> None:
    results = [run_seed(seed, profile="membership") for seed in range(150)]
    bad = [r for r in results if not r.ok]
    assert not bad, "\n".join(f"{r.violation}\n  {r.reproduce}" for r in bad)
    for r in results:
        scenario = make_scenario(r.seed, profile="membership")
        assert r.heights >= scenario.min_height


def test_joiners_sign_and_leavers_stop_in_a_simulation() -> None:
    sim = Simulation(make_scenario(7, profile="membership"))
    sim.run()
    signed = sim.ctx.monitor._signed  # every honest signature
    keys = sim.ctx.keys
    first, second, third = (h for h, _ in sim.scenario.set_changes)
    heights_of = {i: {slot[1] for slot in signed if slot[0] == keys[i]} for i in range(6)}
    assert heights_of[5] and min(heights_of[5]) >= second  # node 5 joins at the second
    assert heights_of[4] and min(heights_of[4]) >= first
    assert max(heights_of[0]) < second  # node 0 leaves at the second change
    assert max(heights_of[1]) < third
    # the monitor also refuses any signature by a node outside its height's set
    assert all(slot[0] in sim.ctx.validators(slot[1]) for slot in signed)

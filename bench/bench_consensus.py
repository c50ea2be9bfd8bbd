"""Consensus throughput benchmarks: decided heights per second of the state machine.

Two setups, each with and without Ed25519 work, labelled in the result's ``crypto`` field:

- ``consensus.machine_heights_per_s``: ONE ``Tendermint`` instance (n = 4) fed the proposal
  and peer votes it needs for each height, pre-signed outside the timed loop. This is "the
  state machine alone". ``crypto=none`` uses a signer that returns zero bytes; ``crypto=sign``
  signs the node's own proposal and votes with Ed25519.
- ``consensus.cluster_heights_per_s``: four instances exchanging every message through an
  in-order FIFO (no delay model), all on one core. ``crypto=none`` signs nothing and checks
  nothing; ``crypto=sign+verify`` signs every message and verifies each at every receiver.
"""

from __future__ import annotations

import collections
import hashlib
import json
import time
from typing import Any

from consensus.crypto import Ed25519Signer, Signer, sign_proposal, sign_vote, verify_message
from consensus.events import (
    Action,
    BroadcastProposal,
    BroadcastVote,
    CommitBlock,
    ConsensusConfig,
    Event,
    ProposalReceived,
    VoteReceived,
)
from consensus.messages import VoteType
from consensus.tendermint import Tendermint
from consensus.validators import ValidatorSet

CHAIN = b"bench"
CONFIG = ConsensusConfig(chain_id=CHAIN)


class NullSigner:
    """Signs nothing: isolates the state machine's own cost from Ed25519."""

    def __init__(self, public_key: bytes) -> None:
        self._public = public_key

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return bytes(64)


class BenchApp:
    """Deterministic blocks, so every proposer of a height proposes the same bytes."""

    def propose_block(self, height: int, round_: int) -> bytes:
        return b"block|%d|%d|bench|x" % (height, round_)

    def block_id(self, block: bytes) -> bytes:
        return hashlib.sha256(block).digest()

    def validate_block(self, height: int, block: bytes) -> bool:
        return block.startswith(b"block|")

    def decided(self, height: int, block_id: bytes, block: bytes) -> None:
        pass


def _keys(n: int) -> list[Ed25519Signer]:
    return [Ed25519Signer(hashlib.sha256(b"bench%d" % i).digest()) for i in range(n)]


def _inputs_for(
    height: int, me: bytes, keys: list[Ed25519Signer], vals: ValidatorSet
) -> list[Event]:
    """What one node receives to decide ``height`` in round 0: proposal, then votes."""
    app = BenchApp()
    block = app.propose_block(height, 0)
    bid = app.block_id(block)
    peers = [k for k in keys if k.public_key != me]
    events: list[Event] = []
    proposer = next(k for k in keys if k.public_key == vals.proposer(height, 0))
    if proposer.public_key != me:
        p = sign_proposal(proposer, CHAIN, height, 0, -1, bid)
        events.append(ProposalReceived(p, block, 0))
    for vtype in (VoteType.PREVOTE, VoteType.PRECOMMIT):
        events += [VoteReceived(sign_vote(k, CHAIN, height, 0, vtype, bid), 0) for k in peers]
    return events


def bench_machine(heights: int, crypto: str, n: int = 4) -> dict[str, Any]:
    keys = _keys(n)
    vals = ValidatorSet.equal(k.public_key for k in keys)
    me = keys[0]
    signer: Signer = me if crypto == "sign" else NullSigner(me.public_key)
    inputs = [_inputs_for(h, me.public_key, keys, vals) for h in range(1, heights + 1)]
    machine = Tendermint(CONFIG, vals, signer, BenchApp(), 1)
    machine.start(0)
    began = time.perf_counter()
    for events in inputs:
        for event in events:
            machine.handle(event)
    elapsed = time.perf_counter() - began
    assert machine.height == heights + 1, "benchmark run did not decide every height"
    return {
        "bench": "consensus.machine_heights_per_s", "n": n, "crypto": crypto,
        "value": round(heights / elapsed, 1), "unit": "heights/s", "heights": heights,
    }


def bench_cluster(heights: int, crypto: str, n: int = 4) -> dict[str, Any]:
    keys = _keys(n)
    vals = ValidatorSet.equal(k.public_key for k in keys)
    verify = crypto == "sign+verify"
    signers: list[Signer] = [k if verify else NullSigner(k.public_key) for k in keys]
    machines = [Tendermint(CONFIG, vals, s, BenchApp(), 1) for s in signers]
    queue: collections.deque[tuple[int, Event]] = collections.deque()
    decided = [0] * n
    began = time.perf_counter()
    for i, m in enumerate(machines):
        _fan_out(i, m.start(0), queue, decided, n)
    while min(decided) < heights and queue:
        dst, event = queue.popleft()
        if verify:
            message = event.vote if isinstance(event, VoteReceived) else event.proposal  # type: ignore[union-attr]
            verify_message(message, vals, CHAIN)
        _fan_out(dst, machines[dst].handle(event), queue, decided, n)
    elapsed = time.perf_counter() - began
    assert min(decided) >= heights, "cluster stalled"
    return {
        "bench": "consensus.cluster_heights_per_s", "n": n, "crypto": crypto,
        "value": round(min(decided) / elapsed, 1), "unit": "heights/s", "heights": min(decided),
    }


def _fan_out(
    src: int,
    actions: list[Action],
    queue: collections.deque[tuple[int, Event]],
    decided: list[int],
    n: int,
) -> None:
    for action in actions:
        event: Event | None = None
        if isinstance(action, BroadcastVote):
            event = VoteReceived(action.vote, 0)
        elif isinstance(action, BroadcastProposal):
            event = ProposalReceived(action.proposal, action.block, 0)
        elif isinstance(action, CommitBlock):
            decided[src] = action.height
        if event is not None:
            queue.extend((dst, event) for dst in range(n) if dst != src)


def run() -> list[dict[str, Any]]:
    """Every figure, each printed as a JSON line as soon as it is measured."""
    results = []
    for measure in (
        lambda: bench_machine(5000, "none"),
        lambda: bench_machine(2000, "sign"),
        lambda: bench_cluster(2000, "none"),
        lambda: bench_cluster(300, "sign+verify"),
    ):
        row = measure()
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


if __name__ == "__main__":
    run()

"""A Byzantine validator: a real node process whose consensus output lies.

``python -m tests.faults.byzantine --config node.toml [--seed N]`` runs the ordinary
node, but every consensus message it sends passes through ``Liar`` first, which (seeded,
per message) does one of:

- withholds the vote (sends nothing);
- equivocates: sends the vote and, signed with its real key, a conflicting one (another
  block id, or nil) for the same height, round and type;
- sends a copy with an invalid signature;
- as proposer, proposes an invalid block (a header whose tree root lies about its
  records), or equivocates: an honest block to some peers and the invalid one to others.

It also gossips records with broken signatures. The honest validators must detect all of
it (evidence, refused messages), never commit an invalid block, and keep making progress
(3 honest of 4 are 2f+1).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import random

from consensus.crypto import Ed25519Signer, sign_proposal, sign_vote
from consensus.events import Action, BroadcastProposal, BroadcastVote
from consensus.messages import Proposal, Vote
from ledger.blocks import Block
from node.daemon import _stop_on_signals
from node.node import Node
from node.runtime import ConsensusDriver
from proto import node_pb2


class Liar:
    def __init__(self, node: Node, rng: random.Random) -> None:
        assert node.driver is not None and node.key is not None
        self.node = node
        self.driver: ConsensusDriver = node.driver
        self.rng = rng
        self.signer = Ed25519Signer(node.key.seed)
        self.counts: dict[str, int] = {}
        self._honest_do = self.driver._do
        self.driver._do = self._do  # type: ignore[method-assign]

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        self.node.log.warning("byzantine", behaviour=what, total=self.counts[what])

    def _do(self, action: Action) -> None:
        if isinstance(action, BroadcastVote):
            self._vote(action.vote)
        elif isinstance(action, BroadcastProposal):
            self._proposal(action.proposal, action.block)
        else:
            self._honest_do(action)

    def _send(self, message: node_pb2.PeerMessage, peers: list[str] | None = None) -> None:
        for name in peers if peers is not None else list(self.node.peers.links):
            self.node.peers.send(name, message)

    # --- votes -------------------------------------------------------------------------

    def _vote(self, vote: Vote) -> None:
        pick = self.rng.random()
        if pick < 0.25:
            self._count("withhold vote")
            return
        self._send(node_pb2.PeerMessage(vote=vote.to_bytes()))
        if pick < 0.5:
            other = None if vote.block_id is not None else self.rng.randbytes(32)
            twin = sign_vote(self.signer, vote.chain_id, vote.height, vote.round,
                             vote.vote_type, other)
            self._send(node_pb2.PeerMessage(vote=twin.to_bytes()))
            self._count("equivocate vote")
        elif pick < 0.65:
            forged = dataclasses.replace(vote, signature=bytes(64))
            self._send(node_pb2.PeerMessage(vote=forged.to_bytes()))
            self._count("invalid signature")
            self._send(node_pb2.PeerMessage(records=node_pb2.RecordBatch(
                envelopes=[os.urandom(120)])))

    # --- proposals ---------------------------------------------------------------------

    def _proposal(self, proposal: Proposal, block: bytes) -> None:
        bad_block = self._invalid_block(block)
        bad = sign_proposal(self.signer, proposal.chain_id, proposal.height, proposal.round,
                            proposal.valid_round, hashlib.sha256(_header(bad_block)).digest())
        honest_msg = _proposal_message(proposal, block)
        bad_msg = _proposal_message(bad, bad_block)
        pick = self.rng.random()
        if pick < 0.4:
            self._send(bad_msg)
            self._count("invalid block")
        elif pick < 0.8:
            peers = list(self.node.peers.links)
            self.rng.shuffle(peers)
            self._send(honest_msg, peers[: len(peers) // 2])
            self._send(bad_msg, peers[len(peers) // 2 :])
            self._count("equivocate proposal")
        else:
            self._send(honest_msg)

    def _invalid_block(self, block: bytes) -> bytes:
        parsed = Block.from_bytes(block, self.node.limits)
        header = dataclasses.replace(parsed.header, tree_root=self.rng.randbytes(32))
        return Block(header, parsed.envelopes).to_bytes()


def _header(block: bytes) -> bytes:
    return Block.from_bytes(block).header.to_bytes()


def _proposal_message(proposal: Proposal, block: bytes) -> node_pb2.PeerMessage:
    return node_pb2.PeerMessage(proposal=node_pb2.ProposalMessage(
        proposal=proposal.to_bytes(), block=block))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="byzantine")
    parser.add_argument("--config", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from node.config import load_config
    from node.logging_setup import configure_logging

    config = load_config(args.config)
    configure_logging(config.log.format, config.log.level)
    stop = _stop_on_signals()
    node = Node(config)
    liar = Liar(node, random.Random(args.seed))
    node.start()
    stop.wait()
    node.log.warning("byzantine summary", **{k.replace(" ", "_"): v
                                               for k, v in liar.counts.items()})
    node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

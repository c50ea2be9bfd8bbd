"""Simulated validators: an honest driver around ``Tendermint``, and Byzantine variants."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from consensus.certificate import CommitCertificate, check_certificate
from consensus.crypto import Ed25519Signer, sign_proposal, sign_vote, verify_message
from consensus.events import (
    Action,
    BlockReceived,
    BroadcastProposal,
    BroadcastVote,
    CommitBlock,
    CommitReceived,
    ConsensusConfig,
    Event,
    PersistSafety,
    ProposalReceived,
    ReportEvidence,
    RequestBlock,
    SafetyState,
    ScheduleTimeout,
    SendCommit,
    TimeoutExpired,
    VoteReceived,
)
from consensus.messages import Proposal, Vote
from consensus.sim.app import SimApplication
from consensus.sim.monitor import Monitor, SignatureCache
from consensus.sim.world import (
    BlockRequestMsg,
    BlockResponseMsg,
    CommitMsg,
    Fire,
    Network,
    ProposalMsg,
    Scheduler,
    SetSchedule,
    SyncRequestMsg,
    VoteMsg,
    WireMsg,
)
from consensus.tendermint import Tendermint
from ledger.errors import VerificationError


class Behavior(enum.Enum):
    HONEST = "honest"
    SILENT = "silent"
    EQUIVOCATING_PROPOSER = "equivocating-proposer"
    DOUBLE_VOTER = "double-voter"
    INVALID_PROPOSER = "invalid-proposer"
    REPLAYER = "replayer"


@dataclass
class SimContext:
    config: ConsensusConfig
    validators: SetSchedule
    keys: list[bytes]
    network: Network
    scheduler: Scheduler
    monitor: Monitor
    cache: SignatureCache
    rng: random.Random


class SimNode:
    """Runs one state machine and executes its actions against the simulated world."""

    def __init__(self, index: int, signer: Ed25519Signer, behavior: Behavior, ctx: SimContext):
        self.index, self.signer, self.behavior, self.ctx = index, signer, behavior, ctx
        self.key = signer.public_key
        self.app = SimApplication(self.key, invalid=behavior is Behavior.INVALID_PROPOSER)
        self.machine: Tendermint | None = None
        self.incarnation = 0
        self.durable: SafetyState | None = None
        self.ledger: dict[int, tuple[bytes, CommitCertificate]] = {}
        self.crash_after: int | None = None
        self._history: list[WireMsg] = []
        self._seen_ids: dict[int, list[bytes]] = {}
        self._sync_asked: dict[int, int] = {}

    @property
    def honest(self) -> bool:
        return self.behavior is Behavior.HONEST

    @property
    def height(self) -> int:
        """Highest committed height (0 before the first commit)."""
        return len(self.ledger)

    def start(self) -> None:
        """Start, or restart from the durable safety state and the committed ledger."""
        if self.behavior is Behavior.SILENT:
            return
        self.incarnation += 1
        ctx = self.ctx
        self.machine = Tendermint(
            ctx.config, ctx.validators, self.signer, self.app, self.height + 1, self.durable
        )
        self._run(self.machine.start(ctx.scheduler.now))

    def crash(self) -> None:
        self.machine = None
        self.crash_after = None

    def fire(self, item: Fire) -> None:
        if self.machine is not None and item.incarnation == self.incarnation:
            self._run(self.machine.handle(TimeoutExpired(item.timeout, self.ctx.scheduler.now)))

    def deliver(self, msg: WireMsg) -> None:
        if self.machine is None:
            return
        if self.behavior is Behavior.REPLAYER:
            self._replay(msg)
        event = self._to_event(msg, self.machine)
        if event is not None:
            self._run(self.machine.handle(event))

    # ---- boundary: verify, then hand to the machine ---------------------------------------

    def _to_event(self, msg: WireMsg, machine: Tendermint) -> Event | None:
        ctx, now = self.ctx, self.ctx.scheduler.now
        try:
            if isinstance(msg, VoteMsg):
                vals = ctx.validators(msg.vote.height)
                verify_message(msg.vote, vals, ctx.config.chain_id, ctx.cache)
                self._follow(msg.vote.height, msg.vote.validator, machine)
                return VoteReceived(msg.vote, now)
            if isinstance(msg, ProposalMsg):
                vals = ctx.validators(msg.proposal.height)
                verify_message(msg.proposal, vals, ctx.config.chain_id, ctx.cache)
                self._follow(msg.proposal.height, msg.proposal.proposer, machine)
                self._seen_ids.setdefault(msg.proposal.height, []).append(msg.proposal.block_id)
                return ProposalReceived(msg.proposal, msg.block, now)
            if isinstance(msg, CommitMsg):
                if msg.certificate.height != machine.height:
                    return None
                vals = ctx.validators(msg.certificate.height)
                check_certificate(msg.certificate, vals, ctx.config.chain_id, ctx.cache)
                return CommitReceived(msg.certificate, msg.block, now)
        except VerificationError:
            return None  # a peer's fault: drop it, as a node would
        if isinstance(msg, BlockResponseMsg):
            return BlockReceived(msg.height, msg.block_id, msg.block, now)
        if isinstance(msg, SyncRequestMsg):
            stored = self.ledger.get(msg.height)
            if stored is not None:
                reply = CommitMsg(stored[1], stored[0])
                self.ctx.network.send(self.index, msg.requester, reply)
            return None
        self._answer_block_request(msg, machine)
        return None

    def _follow(self, height: int, sender: bytes, machine: Tendermint) -> None:
        """A follower hearing a higher height asks that peer for the commit it lacks (at
        most once per retry interval and height)."""
        if machine.voting or height <= machine.height:
            return
        now, last = self.ctx.scheduler.now, self._sync_asked.get(machine.height)
        if last is not None and now - last < self.ctx.config.retry_interval_ms:
            return
        self._sync_asked[machine.height] = now
        peer = self.ctx.keys.index(sender)
        self.ctx.network.send(self.index, peer, SyncRequestMsg(self.index, machine.height))

    def _answer_block_request(self, msg: BlockRequestMsg, machine: Tendermint) -> None:
        block = machine.known_block(msg.block_id) if msg.height == machine.height else None
        stored = self.ledger.get(msg.height)
        if block is None and stored is not None and stored[1].block_id == msg.block_id:
            block = stored[0]
        if block is not None:
            reply = BlockResponseMsg(msg.height, msg.block_id, block)
            self.ctx.network.send(self.index, msg.requester, reply)

    # ---- executing actions ------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        for done, action in enumerate(actions):
            if self.crash_after is not None and done >= self.crash_after:
                self.crash()  # crash in the middle of executing one step's actions
                return
            self._execute(action)
        if self.crash_after is not None:
            self.crash()

    def _execute(self, action: Action) -> None:
        ctx = self.ctx
        if isinstance(action, PersistSafety):
            self.durable = action.state
        elif isinstance(action, BroadcastVote):
            self._emit_vote(action.vote)
        elif isinstance(action, BroadcastProposal):
            self._emit_proposal(action.proposal, action.block)
        elif isinstance(action, ScheduleTimeout):
            ctx.scheduler.at(action.deadline, Fire(self.index, self.incarnation, action.timeout))
        elif isinstance(action, CommitBlock):
            self._commit(action)
        elif isinstance(action, RequestBlock):
            request = BlockRequestMsg(self.index, action.height, action.block_id)
            ctx.network.broadcast(self.index, request)
        elif isinstance(action, SendCommit):
            self._send_commit(action)
        elif isinstance(action, ReportEvidence) and self.honest:
            ctx.monitor.on_evidence(self.index, action.evidence)

    def _commit(self, action: CommitBlock) -> None:
        if action.height != self.height + 1:
            raise AssertionError(f"node {self.index} committed h={action.height} out of order")
        if self.honest:
            self.ctx.monitor.on_commit(
                self.index, action.height, action.block_id, action.block, action.certificate
            )
        self.ledger[action.height] = (action.block, action.certificate)

    def _send_commit(self, action: SendCommit) -> None:
        stored = self.ledger.get(action.height)
        if stored is not None:
            peer = self.ctx.keys.index(action.peer)
            self.ctx.network.send(self.index, peer, CommitMsg(stored[1], stored[0]))

    def _persisted(self) -> tuple[int, int, int] | None:
        return None if self.durable is None else self.durable.signed_position

    def _emit_vote(self, vote: Vote) -> None:
        if vote.validator != self.key:  # relaying a peer's vote
            self.ctx.network.broadcast(self.index, VoteMsg(vote))
            return
        if self.honest:
            self.ctx.monitor.on_signed(vote, self._persisted())
        if self.behavior is Behavior.DOUBLE_VOTER:
            self._split(VoteMsg(vote), VoteMsg(self._conflicting_vote(vote)))
        else:
            self.ctx.network.broadcast(self.index, VoteMsg(vote))

    def _emit_proposal(self, proposal: Proposal, block: bytes) -> None:
        if self.honest:
            self.ctx.monitor.on_signed(proposal, self._persisted())
        if self.behavior is Behavior.EQUIVOCATING_PROPOSER:
            other = self.app.propose_block(proposal.height, proposal.round)
            alt = sign_proposal(
                self.signer, proposal.chain_id, proposal.height, proposal.round,
                proposal.valid_round, self.app.block_id(other),
            )
            self._split(ProposalMsg(proposal, block), ProposalMsg(alt, other))
        else:
            self.ctx.network.broadcast(self.index, ProposalMsg(proposal, block))

    # ---- Byzantine behaviour -------------------------------------------------------------------

    def _split(self, first: WireMsg, second: WireMsg) -> None:
        """Send each peer one version or both (so some peers can catch the equivocation)."""
        rng, net = self.ctx.rng, self.ctx.network
        for peer in range(net.size):
            if peer == self.index:
                continue
            pick = rng.randrange(3)
            if pick != 1:
                net.send(self.index, peer, first)
            if pick != 0:
                net.send(self.index, peer, second)

    def _conflicting_vote(self, vote: Vote) -> Vote:
        others = [b for b in self._seen_ids.get(vote.height, []) if b != vote.block_id]
        target = self.ctx.rng.choice(others) if others and vote.block_id is None else None
        if vote.block_id is None and target is None:
            target = self.ctx.rng.randbytes(32)
        return sign_vote(
            self.signer, vote.chain_id, vote.height, vote.round, vote.vote_type, target
        )

    def _replay(self, msg: WireMsg) -> None:
        """Keep what arrives; now and then send an old message, or a forged copy, anywhere."""
        rng, net = self.ctx.rng, self.ctx.network
        if len(self._history) < 256:
            self._history.append(msg)
        else:
            self._history[rng.randrange(256)] = msg
        if rng.random() < 0.2:
            old = rng.choice(self._history)
            if isinstance(old, VoteMsg) and rng.random() < 0.3:
                old = VoteMsg(_forged(old.vote, rng))
            net.send(self.index, rng.randrange(net.size), old)


def _forged(vote: Vote, rng: random.Random) -> Vote:
    """The same vote with one signature byte flipped: the boundary must drop it."""
    sig = bytearray(vote.signature)
    sig[rng.randrange(len(sig))] ^= 0x01
    return Vote(
        vote.chain_id, vote.height, vote.round, vote.vote_type, vote.block_id,
        vote.validator, bytes(sig),
    )

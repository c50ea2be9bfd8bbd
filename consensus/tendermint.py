"""The Tendermint state machine (Buchman, Kwon, Milosevic, arXiv:1807.04938, Algorithm 1).

Sans-IO: ``handle(event)`` takes one verified input and returns the actions to execute, in
order (see ``consensus.events`` for the driver contract). The application is reached only
through the ``Application`` callbacks (getValue and valid(v) of the paper); signing goes
through a ``Signer``. Line numbers in comments refer to Algorithm 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from consensus.certificate import CommitCertificate
from consensus.crypto import Signer, sign_proposal, sign_vote
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
    Timeout,
    TimeoutExpired,
    TimeoutKind,
    VoteReceived,
)
from consensus.evidence import Equivocation, conflicts
from consensus.messages import Proposal, SignedMessage, Step, Vote, VoteType
from consensus.validators import ValidatorSet
from consensus.votebook import HeightVotes

PREVOTE, PRECOMMIT = VoteType.PREVOTE, VoteType.PRECOMMIT
Position = tuple[int, int, int]
ValidatorsAt = Callable[[int], ValidatorSet]
"""The validator set of a height. Asked when the machine enters the height, which is after
``Application.decided`` staged the block before it: a set changed by governance in block h
is known when h+1 starts."""


def _position(message: SignedMessage) -> Position:
    step = message.vote_type if isinstance(message, Vote) else Step.PROPOSE
    return (message.height, message.round, int(step))


class Application(Protocol):
    """What consensus asks of the application; blocks are opaque bytes to consensus."""

    def propose_block(self, height: int, round_: int) -> bytes:
        """getValue() (line 18): a new block to propose."""
        ...

    def block_id(self, block: bytes) -> bytes:
        """id(v): the 32-byte hash naming a block."""
        ...

    def validate_block(self, height: int, block: bytes) -> bool:
        """valid(v) (lines 23, 29, 36, 50); must be deterministic for a given block."""
        ...

    def decided(self, height: int, block_id: bytes, block: bytes) -> None:
        """decision_p[h] = v (line 51), told before height h+1 starts.

        The next height's proposals build on this block, and the machine may call
        ``propose_block``/``validate_block`` for h+1 within the same ``handle`` call, before
        the driver has run the ``CommitBlock`` action: the application stages the block here
        (in memory); the durable commit still follows through ``CommitBlock``.
        """
        ...


class Tendermint:
    """One node's consensus instance, from ``height`` on (one height at a time).

    ``validators`` is one set for every height or a ``ValidatorsAt`` provider. ``signer``
    is this node's key, or several (a validator key and the next one it rotates to), or
    none: at each height the node signs with the one key in that height's set; with none
    in the set it follows (ingests proposals and votes, decides on 2f+1 precommits) but
    never proposes or votes, and becomes a voter at the first height whose set has its key.
    """

    def __init__(
        self,
        config: ConsensusConfig,
        validators: ValidatorSet | ValidatorsAt,
        signer: Signer | Sequence[Signer] | None,
        app: Application,
        height: int,
        safety: SafetyState | None = None,
    ) -> None:
        self._cfg, self._app = config, app
        if isinstance(validators, ValidatorSet):
            fixed = validators
            self._sets: ValidatorsAt = lambda height: fixed
        else:
            self._sets = validators
        if signer is None:
            self._signers: tuple[Signer, ...] = ()
        elif isinstance(signer, Sequence):
            self._signers = tuple(signer)
        else:
            self._signers = (signer,)
        self._signed_pos: Position = (-1, -1, -1)
        self._signed: dict[Position, SignedMessage] = {}  # signed at _signed_pos's (h, r)
        self._proposed_block: bytes | None = None
        self._catchup_sent: dict[bytes, int] = {}
        self._enter_height(height)
        if safety is not None:
            self._restore(safety)

    @property
    def validators(self) -> ValidatorSet:
        """The validator set of the current height."""
        return self._vals

    @property
    def voting(self) -> bool:
        """Whether this node proposes and votes at the current height."""
        return self._signer is not None

    def _use_set(self, height: int) -> None:
        vals = self._sets(height)
        self._vals, self._quorum, self._weak = vals, vals.quorum, vals.weak_quorum
        # With two of its keys in one set (a rotation done as "add the next key", then
        # "remove the old one"), the node still signs with one only, the first of its keys
        # in order (the current one): one node never casts two validators' votes. Raising
        # here would leave the machine half-way into the height.
        mine = [s for s in self._signers if s.public_key in vals]
        self._signer: Signer | None = mine[0] if mine else None
        self._me: bytes = (self._signer.public_key if self._signer is not None
                           else self._signers[0].public_key if self._signers else b"")

    # ---- public surface ----------------------------------------------------------------

    def start(self, now: int) -> list[Action]:
        """upon start do StartRound (line 10); a restored node resumes its persisted round."""
        actions: list[Action] = []
        self._schedule(TimeoutKind.RETRY, self._cfg.retry_interval_ms, now, actions)
        self._start_round(self.round, now, actions)
        self._apply_rules(now, actions)
        return actions

    def handle(self, event: Event) -> list[Action]:
        actions: list[Action] = []
        if isinstance(event, VoteReceived):
            self._ingest_vote(event.vote, event.now, actions)
        elif isinstance(event, ProposalReceived):
            self._ingest_proposal(event.proposal, event.block, event.now, actions)
        elif isinstance(event, TimeoutExpired):
            self._on_timeout(event.timeout, event.now, actions)
        elif isinstance(event, BlockReceived):
            self._on_block(event, actions)
        else:
            self._on_commit(event, actions)
        self._apply_rules(event.now, actions)
        return actions

    def known_block(self, block_id: bytes) -> bytes | None:
        """Bytes of a block seen at the current height (to answer a peer's request)."""
        return self._blocks.get(block_id)

    def safety_state(self) -> SafetyState:
        valid_block = None if self._valid_id is None else self._blocks.get(self._valid_id)
        h, r, step = self._signed_pos
        signed = tuple(self._signed[p] for p in sorted(self._signed))
        return SafetyState(
            h, r, Step(max(step, 0)), self._locked_round, self._locked_id, self._valid_round,
            self._valid_id, valid_block, signed, self._proposed_block,
        )

    # ---- height and round ----------------------------------------------------------------

    def _enter_height(self, height: int) -> None:
        """Line 53: reset locks, valid value and message log for a new height."""
        self.height, self.round, self.step = height, 0, Step.PROPOSE
        self._use_set(height)
        self._locked_round: int = -1  # line 7
        self._locked_id: bytes | None = None  # line 6
        self._valid_round: int = -1  # line 9
        self._valid_id: bytes | None = None  # line 8
        self._votes = HeightVotes(self._vals)
        self._proposals: dict[int, Proposal] = {}
        self._blocks: dict[bytes, bytes] = {}
        self._validity: dict[bytes, bool] = {}
        self._decidable: list[tuple[int, bytes]] = []
        self._requested: set[bytes] = set()
        self._fired: set[tuple[int, int]] = set()  # (line, round) for "for the first time"
        self._accused: set[tuple[bytes, int, int]] = set()
        self._helped: dict[int, int] = {}
        self._future: dict[bytes, list[Vote | tuple[Proposal, bytes]]] = {}

    def _restore(self, safety: SafetyState) -> None:
        """Resume after a crash: never sign below or beside what was signed before."""
        self._signed_pos = safety.signed_position
        self._signed = {_position(m): m for m in safety.signed}
        self._proposed_block = safety.proposed_block
        if safety.height != self.height:
            return
        self.round = safety.round
        self._locked_round, self._locked_id = safety.locked_round, safety.locked_block_id
        if safety.valid_block is not None and safety.valid_block_id is not None:
            self._blocks[safety.valid_block_id] = safety.valid_block
            self._valid_round, self._valid_id = safety.valid_round, safety.valid_block_id
        for signed in safety.signed:
            if isinstance(signed, Vote):
                self._record_vote(signed)
            elif safety.proposed_block is not None:
                self._proposals[signed.round] = signed
                self._blocks[signed.block_id] = safety.proposed_block

    def _start_round(self, round_: int, now: int, actions: list[Action]) -> None:
        """StartRound (lines 11-21)."""
        self.round, self.step = round_, Step.PROPOSE
        proposer = self._vals.proposer(self.height, round_)
        if self._signer is not None and proposer == self._me and self._propose(actions):
            return
        self._schedule(TimeoutKind.PROPOSE, self._cfg.timeout_propose_ms, now, actions)

    def _propose(self, actions: list[Action]) -> bool:
        """Lines 14-19: re-propose validValue if any, else a fresh value from getValue()."""
        if self._valid_id is not None:
            block_id, block = self._valid_id, self._blocks[self._valid_id]  # line 16
        else:
            block = self._app.propose_block(self.height, self.round)  # line 18
            block_id = self._app.block_id(block)
        h, r, vr, signer = self.height, self.round, self._valid_round, self._signer
        assert signer is not None  # only a voter proposes (_start_round)
        proposal = self._release(
            (h, r, Step.PROPOSE),
            lambda: sign_proposal(signer, self._cfg.chain_id, h, r, vr, block_id),
            actions,
            block,
        )
        if not isinstance(proposal, Proposal):
            return False
        if proposal.block_id != block_id:  # re-released after a restart: its own block
            if self._proposed_block is None:
                return False
            block = self._proposed_block
        self._blocks.setdefault(proposal.block_id, block)
        actions.append(BroadcastProposal(proposal, block))  # line 19
        self._proposals[r] = proposal
        if proposal.valid_round >= 0:
            self._relay_valid_round_prevotes(actions)
        return True

    def _relay_valid_round_prevotes(self, actions: list[Action]) -> None:
        """Send on the 2f+1 prevotes behind validRound, so peers can apply line 28 (the
        paper assumes gossip eventually delivers them; lost messages are not resent)."""
        if self._valid_id is not None and self._valid_round >= 0:
            prevotes = self._votes.votes_for(self._valid_round, PREVOTE, self._valid_id)
            actions.extend(BroadcastVote(v) for v in prevotes)

    def _schedule(self, kind: TimeoutKind, base: int, now: int, actions: list[Action]) -> None:
        grow = 0 if kind is TimeoutKind.RETRY else self.round * self._cfg.timeout_delta_ms
        timeout = Timeout(kind, self.height, self.round)
        actions.append(ScheduleTimeout(timeout, now + base + grow))

    # ---- signing with the double-sign guard ------------------------------------------------

    def _release(
        self,
        position: Position,
        make: Callable[[], SignedMessage],
        actions: list[Action],
        block: bytes | None = None,
    ) -> SignedMessage | None:
        """Sign at ``position`` only if it is beyond the last signed position, persisting
        first; at or below it, re-release what was signed there, if anything (never sign a
        second, possibly conflicting message after a restart)."""
        if position <= self._signed_pos:
            return self._signed.get(position)
        message = make()
        if position[:2] != self._signed_pos[:2]:
            self._signed, self._proposed_block = {}, None
        self._signed_pos, self._signed[position] = position, message
        if block is not None:
            self._proposed_block = block
        actions.append(PersistSafety(self.safety_state()))
        return message

    def _vote(self, vote_type: VoteType, block_id: bytes | None, actions: list[Action]) -> None:
        h, r, signer = self.height, self.round, self._signer
        if signer is None:
            return  # a follower at this height: it moves through the steps without voting
        vote = self._release(
            (h, r, int(vote_type)),
            lambda: sign_vote(signer, self._cfg.chain_id, h, r, vote_type, block_id),
            actions,
        )
        if isinstance(vote, Vote):
            actions.append(BroadcastVote(vote))
            self._record_vote(vote)

    # ---- inputs ----------------------------------------------------------------------------

    def _ingest_vote(self, vote: Vote, now: int, actions: list[Action]) -> None:
        if vote.height != self.height:
            self._other_height(vote.height, vote.validator, vote, now, actions)
            return
        if vote.round > self.round + self._cfg.max_rounds_ahead:
            return
        if self._vals.power_of(vote.validator) == 0:
            return  # not a validator of this height (e.g. buffered before a set change)
        earlier = self._record_vote(vote)
        if earlier is not None:
            self._accuse(earlier, vote, actions)
        self._maybe_skip_round(vote.round, vote.validator, now, actions)
        if vote.round < self.round and vote.validator != self._me:
            self._help_lower_round(vote.round, now, actions)

    def _help_lower_round(self, round_: int, now: int, actions: list[Action]) -> None:
        """A peer still speaks in a round we left: resend our votes of that round, which
        may be the messages it lost (gossip stand-in; at most once per retry interval)."""
        last = self._helped.get(round_)
        if last is None or now - last >= self._cfg.retry_interval_ms:
            self._helped[round_] = now
            actions.extend(BroadcastVote(v) for v in self._votes.own_votes(self._me, round_))

    def _record_vote(self, vote: Vote) -> Vote | None:
        """Tally a vote; return the earlier conflicting vote if this one equivocates."""
        result = self._votes.add(vote)
        if result.added and vote.vote_type is PRECOMMIT and vote.block_id is not None:
            power = self._votes.power_for(vote.round, PRECOMMIT, vote.block_id)
            if power >= self._quorum and power - self._vals.power_of(vote.validator) < self._quorum:
                self._decidable.append((vote.round, vote.block_id))
        return result.conflicting

    def _ingest_proposal(
        self, proposal: Proposal, block: bytes, now: int, actions: list[Action]
    ) -> None:
        if proposal.height != self.height:
            self._other_height(proposal.height, proposal.proposer, (proposal, block), now, actions)
            return
        if proposal.proposer != self._vals.proposer(proposal.height, proposal.round):
            return  # lines 22, 28, 36, 49 only count proposals from proposer(h, r)
        if proposal.round > self.round + self._cfg.max_rounds_ahead:
            return
        earlier = self._proposals.get(proposal.round)
        if earlier is not None:
            if conflicts(earlier, proposal):
                self._accuse(earlier, proposal, actions)
            return
        if self._app.block_id(block) != proposal.block_id:
            return  # block bytes do not match the signed id: not a proposal of v
        self._proposals[proposal.round] = proposal
        self._blocks.setdefault(proposal.block_id, block)
        self._maybe_skip_round(proposal.round, proposal.proposer, now, actions)

    def _other_height(
        self,
        height: int,
        sender: bytes,
        item: Vote | tuple[Proposal, bytes],
        now: int,
        actions: list[Action],
    ) -> None:
        """Buffer the next height's messages; help a peer that is still at a past height."""
        if height == self.height + 1:
            queue = self._future.setdefault(sender, [])
            if len(queue) < self._cfg.max_future_per_validator:
                queue.append(item)
        elif height < self.height and sender != self._me:
            last = self._catchup_sent.get(sender)
            if last is None or now - last >= self._cfg.retry_interval_ms:
                self._catchup_sent[sender] = now
                actions.append(SendCommit(sender, height))

    def _accuse(self, first: SignedMessage, second: SignedMessage, actions: list[Action]) -> None:
        evidence = Equivocation.of(first, second)
        kind = first.vote_type if isinstance(first, Vote) else Step.PROPOSE
        key = (evidence.validator, first.round, int(kind))
        if key not in self._accused:
            self._accused.add(key)
            actions.append(ReportEvidence(evidence))

    def _maybe_skip_round(self, round_: int, sender: bytes, now: int, acts: list[Action]) -> None:
        """Line 55: f+1 power of messages from a higher round makes us StartRound(round)."""
        power = self._votes.note_sender(round_, sender)
        if round_ > self.round and power >= self._weak:
            self._start_round(round_, now, acts)  # line 56

    def _on_block(self, event: BlockReceived, actions: list[Action]) -> None:
        wanted = event.height == self.height and event.block_id in self._requested
        if wanted and self._app.block_id(event.block) == event.block_id:
            self._blocks.setdefault(event.block_id, event.block)

    def _on_commit(self, event: CommitReceived, actions: list[Action]) -> None:
        """A peer's decided block with its (already verified) certificate: decide it."""
        cert = event.certificate
        if cert.height != self.height or cert.chain_id != self._cfg.chain_id:
            return
        if self._app.block_id(event.block) != cert.block_id:
            return
        self._blocks.setdefault(cert.block_id, event.block)
        if self._is_valid(cert.block_id):
            self._decide(cert.block_id, cert, event.now, actions)

    def _on_timeout(self, timeout: Timeout, now: int, actions: list[Action]) -> None:
        if timeout.height != self.height:
            return
        if timeout.kind is TimeoutKind.RETRY:
            self._retry(now, actions)
        elif timeout.round != self.round:
            return
        elif timeout.kind is TimeoutKind.PROPOSE and self.step is Step.PROPOSE:
            self._vote(PREVOTE, None, actions)  # lines 57-60
            self.step = Step.PREVOTE
        elif timeout.kind is TimeoutKind.PREVOTE and self.step is Step.PREVOTE:
            self._vote(PRECOMMIT, None, actions)  # lines 61-64
            self.step = Step.PRECOMMIT
        elif timeout.kind is TimeoutKind.PRECOMMIT:
            self._start_round(self.round + 1, now, actions)  # lines 65-67

    def _retry(self, now: int, actions: list[Action]) -> None:
        """Stand-in for gossip: resend this round's own messages, re-request missing blocks."""
        own = self._proposals.get(self.round)
        if own is not None and own.proposer == self._me and own.block_id in self._blocks:
            actions.append(BroadcastProposal(own, self._blocks[own.block_id]))
        actions.extend(BroadcastVote(v) for v in self._votes.own_votes(self._me, self.round))
        self._relay_valid_round_prevotes(actions)
        for _, block_id in self._decidable:
            if block_id not in self._blocks:
                actions.append(RequestBlock(self.height, block_id))
        self._schedule(TimeoutKind.RETRY, self._cfg.retry_interval_ms, now, actions)

    # ---- the upon rules ---------------------------------------------------------------------

    def _apply_rules(self, now: int, actions: list[Action]) -> None:
        """Fire enabled rules until none is; each rule's guard makes it fire at most once."""
        while True:
            if self._try_decide(now, actions):
                continue
            self._schedule_step_timeouts(now, actions)  # lines 34, 47
            if not (self._on_proposal_rules(actions) or self._on_prevote_quorum(actions)):
                return

    def _is_valid(self, block_id: bytes) -> bool:
        """valid(v), asked once per block of the height and cached."""
        known = self._validity.get(block_id)
        if known is None:
            block = self._blocks.get(block_id)
            if block is None:
                return False
            known = self._validity[block_id] = self._app.validate_block(self.height, block)
        return known

    def _lock_allows(self, block_id: bytes, valid_round: int) -> bool:
        """The lock conditions of line 23 (vr = -1) and line 29 (vr >= 0)."""
        if self._cfg.test_only_disable_lock_rule:
            return True
        return self._locked_round <= valid_round or self._locked_id == block_id

    def _on_proposal_rules(self, actions: list[Action]) -> bool:
        """Lines 22-33. vr = -1 and 0 <= vr < round_p select exactly one of the two rules."""
        proposal = self._proposals.get(self.round)
        if self.step is not Step.PROPOSE or proposal is None:
            return False
        block_id, vr = proposal.block_id, proposal.valid_round
        if vr == -1:  # line 22; lockedRound = -1 is lockedRound <= vr with vr = -1
            accept = self._is_valid(block_id) and self._lock_allows(block_id, -1)  # line 23
        elif 0 <= vr < self.round and self._votes.power_for(vr, PREVOTE, block_id) >= self._quorum:
            accept = self._is_valid(block_id) and self._lock_allows(block_id, vr)  # line 29
        else:
            return False
        self._vote(PREVOTE, block_id if accept else None, actions)  # lines 24/26, 30/32
        self.step = Step.PREVOTE  # lines 27, 33
        return True

    def _on_prevote_quorum(self, actions: list[Action]) -> bool:
        """Lines 36-46: lock and precommit v, or precommit nil."""
        r, proposal = self.round, self._proposals.get(self.round)
        if (
            proposal is not None
            and self.step >= Step.PREVOTE
            and (36, r) not in self._fired
            and self._votes.power_for(r, PREVOTE, proposal.block_id) >= self._quorum
            and self._is_valid(proposal.block_id)
        ):
            self._fired.add((36, r))
            # Lines 42-43 first, so the state persisted with the precommit carries them.
            self._valid_id, self._valid_round = proposal.block_id, r
            if self.step is Step.PREVOTE:
                self._locked_id, self._locked_round = proposal.block_id, r  # lines 38-39
                self._vote(PRECOMMIT, proposal.block_id, actions)  # line 40
                self.step = Step.PRECOMMIT  # line 41
            return True
        if self.step is Step.PREVOTE and self._votes.power_for(r, PREVOTE, None) >= self._quorum:
            self._vote(PRECOMMIT, None, actions)  # line 45
            self.step = Step.PRECOMMIT  # line 46
            return True
        return False

    def _schedule_step_timeouts(self, now: int, actions: list[Action]) -> None:
        r, cfg = self.round, self._cfg
        if (
            self.step is Step.PREVOTE
            and (34, r) not in self._fired
            and self._votes.total(r, PREVOTE) >= self._quorum
        ):
            self._fired.add((34, r))  # line 34-35
            self._schedule(TimeoutKind.PREVOTE, cfg.timeout_prevote_ms, now, actions)
        if (47, r) not in self._fired and self._votes.total(r, PRECOMMIT) >= self._quorum:
            self._fired.add((47, r))  # lines 47-48
            self._schedule(TimeoutKind.PRECOMMIT, cfg.timeout_precommit_ms, now, actions)

    def _try_decide(self, now: int, actions: list[Action]) -> bool:
        """Lines 49-54, for any round; without the block, fetch it first."""
        for round_, block_id in self._decidable:
            if block_id not in self._blocks:
                if block_id not in self._requested:
                    self._requested.add(block_id)
                    actions.append(RequestBlock(self.height, block_id))
                continue
            if self._is_valid(block_id):  # line 50
                votes = self._votes.votes_for(round_, PRECOMMIT, block_id)
                self._decide(block_id, CommitCertificate.from_precommits(votes), now, actions)
                return True
        return False

    def _decide(
        self, block_id: bytes, cert: CommitCertificate, now: int, actions: list[Action]
    ) -> None:
        """Lines 51-54: decide, move to the next height, replay its buffered messages."""
        actions.append(CommitBlock(self.height, block_id, self._blocks[block_id], cert))
        self._app.decided(self.height, block_id, self._blocks[block_id])
        future = self._future
        self._enter_height(self.height + 1)
        self._schedule(TimeoutKind.RETRY, self._cfg.retry_interval_ms, now, actions)
        self._start_round(0, now, actions)
        for queue in future.values():
            for item in queue:
                if isinstance(item, Vote):
                    self._ingest_vote(item, now, actions)
                else:
                    self._ingest_proposal(item[0], item[1], now, actions)

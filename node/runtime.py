"""The consensus driver: one thread owns the state machine and executes its actions.

gRPC handler threads decode and signature-check peer messages (in parallel: signature
checks release the GIL), then hand them to this thread through a queue. The thread feeds
them to ``consensus.tendermint.Tendermint`` with ``now``, fires timers, and runs the
returned actions in order. ``PersistSafety`` is written durably to LMDB before the next
action runs, so no vote leaves the node before its (height, round, step) is on disk.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from consensus.certificate import CommitCertificate
from consensus.crypto import Ed25519Signer
from consensus.events import (
    Action,
    BlockReceived,
    BroadcastProposal,
    BroadcastVote,
    CommitBlock,
    CommitReceived,
    ConsensusConfig,
    PersistSafety,
    ProposalReceived,
    ReportEvidence,
    RequestBlock,
    SafetyState,
    ScheduleTimeout,
    SendCommit,
    Timeout,
    TimeoutExpired,
    VoteReceived,
)
from consensus.messages import Proposal, Vote
from consensus.tendermint import Tendermint
from ledger.errors import LedgerError, StorageError
from ledger.keys import SigningKey
from ledger.ledger_store import Ledger
from node.app import LedgerApp
from node.checkpoints import CheckpointCollector
from node.commits import CommitBoard
from node.memberships import NodeMemberships
from node.metrics import Metrics
from node.peers import PeerNetwork
from node.priority import PRIORITY
from proto import node_pb2

T = TypeVar("T")
_SAFETY_KEY = b"safety"
_EVIDENCE_PREFIX = b"evidence/"


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


@dataclass(order=True)
class _Timer:
    deadline: int
    seq: int
    timeout: Timeout = field(compare=False)


class ConsensusDriver:
    """Runs one validator's consensus on a thread of its own."""

    def __init__(
        self,
        *,
        config: ConsensusConfig,
        validators: NodeMemberships,
        keys: Sequence[SigningKey],
        app: LedgerApp,
        ledger: Ledger,
        peers: PeerNetwork,
        checkpoints: CheckpointCollector,
        board: CommitBoard,
        peer_of_validator: dict[bytes, str],
        metrics: Metrics,
        log: Any,
        on_failure: Callable[[StorageError], None] | None = None,
    ) -> None:
        self.config = config
        self.memberships = validators
        self.keys = list(keys)
        self.app = app
        self.ledger = ledger
        self.peers = peers
        self.checkpoints = checkpoints
        self.board = board
        self.peer_of_validator = peer_of_validator
        self.metrics = metrics
        self.log = log
        self.failure: StorageError | None = None
        """Set when the store refused a durable write (full map, I/O error): consensus
        halted, because its in-memory state ran ahead of what is on disk."""
        self._on_failure = on_failure
        self._inbox: queue.Queue[Callable[[int], Any]] = queue.Queue()
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consensus", daemon=True)
        self.tm = self._new_state_machine()
        checkpoints.defer_writes = True  # written with the next block (``_commit``)

    # --- state machine lifecycle -------------------------------------------------------

    def _new_state_machine(self) -> Tendermint:
        height = self.ledger.head.height + 1
        safety = self._load_safety()
        if safety is not None and safety.height != height:
            safety = None  # signed only at heights already decided: nothing to resume
        self.app.reset_tip()
        self.memberships.refresh()
        self._timers.clear()
        signers = [Ed25519Signer(k.seed) for k in self.keys]
        return Tendermint(self.config, self.memberships.validator_set, signers, self.app,
                          height, safety)

    def _load_safety(self) -> SafetyState | None:
        with self.ledger.storage.read() as txn:
            raw = txn.get(_SAFETY_KEY, db=self.ledger.storage.db(b"consensus"))
        return None if raw is None else SafetyState.from_bytes(bytes(raw))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._inbox.put(lambda now: None)
        self._thread.join(timeout=10)
        if self.failure is None and not self._thread.is_alive():
            self.checkpoints.flush()

    # --- inputs (any thread) -----------------------------------------------------------

    def on_proposal(self, proposal: Proposal, block: bytes) -> None:
        self._inbox.put(lambda now: self.tm.handle(ProposalReceived(proposal, block, now)))

    def on_vote(self, vote: Vote) -> None:
        self._inbox.put(lambda now: self.tm.handle(VoteReceived(vote, now)))

    def on_block(self, height: int, block: bytes) -> None:
        block_id = self.app.block_id(block)
        self._inbox.put(
            lambda now: self.tm.handle(BlockReceived(height, block_id, block, now))
        )

    def on_commit(self, certificate: CommitCertificate, block: bytes) -> None:
        """A verified certificate for a block; applied if it is for our current height."""

        def apply(now: int) -> list[Action]:
            if certificate.height != self.tm.height:
                return []
            return self.tm.handle(CommitReceived(certificate, block, now))

        self._inbox.put(apply)

    def on_block_request(self, peer: str, height: int, block_id: bytes) -> None:
        def answer(now: int) -> None:
            block = self.tm.known_block(block_id) if height == self.tm.height else None
            if block is None and 0 < height <= self.ledger.head.height:
                stored = self.ledger.block(height)
                block = stored.to_bytes() if stored.hash == block_id else None
            if block is not None:
                msg = node_pb2.PeerMessage(block=node_pb2.BlockMessage(height=height, block=block))
                self.peers.send(peer, msg)

        self._inbox.put(answer)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the consensus thread and return its result (or raise its error)."""
        if self.failure is not None:
            raise self.failure
        box: dict[str, Any] = {}
        done = threading.Event()

        def run(now: int) -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller
                box["error"] = exc
            finally:
                done.set()

        self._inbox.put(run)
        if not done.wait(timeout):
            raise LedgerError(f"consensus thread did not run the call within {timeout} s")
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def restart_at_head(self) -> None:
        """After blocks were applied outside consensus: resume at the new head.

        Call on the consensus thread (through ``call``).
        """
        self.tm = self._new_state_machine()
        self._execute(self.tm.start(monotonic_ms()))

    # --- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except StorageError as exc:
            self._halt(exc)

    def _halt(self, exc: StorageError) -> None:
        """Stop voting for good: the state machine believes in a commit that is not on
        disk. LMDB aborted the transaction, so the store is intact; a restart (with a
        larger ``storage.map_size`` if it was full) resumes from the last durable block."""
        self.failure = exc
        self._stopped.set()
        self.log.error("consensus halted: the store refused a durable write", error=str(exc))
        if self._on_failure is not None:
            self._on_failure(exc)

    def _loop(self) -> None:
        self._execute(self.tm.start(monotonic_ms()))
        while not self._stopped.is_set():
            now = monotonic_ms()
            wait = (self._timers[0].deadline - now) / 1000 if self._timers else 0.5
            try:
                item = self._inbox.get(timeout=max(0.0, min(wait, 0.5)))
            except queue.Empty:
                item = None
                self.checkpoints.flush(older_than=0.2)  # notes no block took along
            if item is not None:
                try:
                    self._execute(item(monotonic_ms()))
                except StorageError:
                    raise
                except Exception:  # a bad input must not stop consensus
                    self.log.exception("consensus input failed")
            self._fire_timers()

    def _fire_timers(self) -> None:
        now = monotonic_ms()
        while self._timers and self._timers[0].deadline <= now:
            timer = heapq.heappop(self._timers)
            self._execute(self.tm.handle(TimeoutExpired(timer.timeout, now)))

    def _execute(self, actions: list[Action] | None) -> None:
        for action in _coalesce(actions or []):
            try:
                if isinstance(action, _DURABLE):
                    with PRIORITY.critical():  # thousands of LMDB calls: see node/priority.py
                        self._do(action)
                else:
                    self._do(action)
            except Exception:  # one bad action must not kill consensus
                self.log.exception("consensus action failed", action=type(action).__name__)
                if isinstance(action, _DURABLE):
                    raise  # durability failed: stop rather than risk safety

    def _do(self, action: Action | _CommitWithSafety) -> None:
        if isinstance(action, _CommitWithSafety):
            self._commit(action.commit, action.safety)
        elif isinstance(action, PersistSafety):
            with self.ledger.storage.write() as txn:  # synced before the vote is sent
                txn.put(_SAFETY_KEY, action.state.to_bytes(),
                        db=self.ledger.storage.db(b"consensus"))
        elif isinstance(action, BroadcastVote):
            self.peers.broadcast(node_pb2.PeerMessage(vote=action.vote.to_bytes()))
        elif isinstance(action, BroadcastProposal):
            msg = node_pb2.ProposalMessage(proposal=action.proposal.to_bytes(), block=action.block)
            self.peers.broadcast(node_pb2.PeerMessage(proposal=msg))
        elif isinstance(action, ScheduleTimeout):
            heapq.heappush(self._timers,
                           _Timer(action.deadline, next(self._seq), action.timeout))
        elif isinstance(action, CommitBlock):
            self._commit(action)
        elif isinstance(action, RequestBlock):
            req = node_pb2.BlockRequest(height=action.height, block_id=action.block_id)
            self.peers.broadcast(node_pb2.PeerMessage(block_request=req))
        elif isinstance(action, SendCommit):
            self._send_commit(action)
        elif isinstance(action, ReportEvidence):
            self._store_evidence(action)

    def _commit(self, action: CommitBlock, safety: PersistSafety | None = None) -> None:
        if action.height <= self.ledger.head.height:
            self.app.committed(action.height)  # catch-up applied it already
            if safety is not None:
                self._do(safety)
            return
        started = time.perf_counter()
        if self.app.staged(action.height) is None:  # not staged by the decided() hook
            self.app.decided(action.height, action.block_id, action.block)
        notes = self.checkpoints.unwritten()  # final notes ride along: no fsync of their own
        also = [self.ledger.checkpoint_put(size, note) for size, note in notes]
        if safety is not None:
            also.append((b"consensus", _SAFETY_KEY, safety.state.to_bytes()))
        block, ids, _, _ = self.app.commit_staged(action.height, action.certificate.to_bytes(),
                                                  also)
        self.checkpoints.written([size for size, _ in notes])
        self.memberships.refresh()
        self.board.committed(block, self.ledger.head.tree_size, ids)
        self.metrics.block_committed(block, time.perf_counter() - started)
        self.metrics.extra_rounds.inc(action.certificate.round)
        self.checkpoints.sign_and_share(block.header.tree_size)
        self.log.debug("block committed", height=action.height, round=action.certificate.round,
                       records=len(block.envelopes))

    def _send_commit(self, action: SendCommit) -> None:
        peer = self.peer_of_validator.get(action.peer)
        if peer is None or not 0 < action.height <= self.ledger.head.height:
            return
        block = self.ledger.block(action.height)
        cert = self.ledger.certificate(action.height) or b""
        msg = node_pb2.CommittedBlock(block=block.to_bytes(), certificate=cert)
        self.peers.send(peer, node_pb2.PeerMessage(commit=msg))

    def _store_evidence(self, action: ReportEvidence) -> None:
        evidence = action.evidence
        key = _EVIDENCE_PREFIX + evidence.height.to_bytes(8, "big") + evidence.validator
        with self.ledger.storage.write() as txn:
            txn.put(key, evidence.to_bytes(), db=self.ledger.storage.db(b"consensus"))
        self.metrics.evidence.inc()
        self.log.warning("equivocation detected", height=evidence.height,
                         validator=evidence.validator.hex()[:16])


@dataclass(frozen=True)
class _CommitWithSafety:
    """A block commit that also writes the safety state, in its transaction."""

    commit: CommitBlock
    safety: PersistSafety


_SENDS = (BroadcastVote, BroadcastProposal, SendCommit, RequestBlock)
_DURABLE = (PersistSafety, CommitBlock, _CommitWithSafety)


def _coalesce(actions: list[Action]) -> list[Action | _CommitWithSafety]:
    """The same actions with one durable write where they had several.

    When one input makes the machine sign more than once (prevote and precommit; decide
    height h and propose at h+1), only the last ``PersistSafety`` of the list is written,
    in the transaction of the list's last block commit if there is one; every message the
    list sends goes out after that write, in its original order. Safe: that state is the
    latest signed position, which covers every message signed before it (never sign at or
    below it again), and a later height's state comes with or after its block on disk.
    Sending later than strictly needed is always allowed.
    """
    last = max((i for i, a in enumerate(actions) if isinstance(a, PersistSafety)), default=-1)
    head = actions[:max(last, 0)]
    if not any(isinstance(a, (PersistSafety, CommitBlock)) for a in head):
        return list(actions)
    safety = actions[last]
    assert isinstance(safety, PersistSafety)
    local: list[Action | _CommitWithSafety] = [
        a for a in head if not isinstance(a, (PersistSafety, *_SENDS))]
    commit = next((i for i in reversed(range(len(local)))
                   if isinstance(local[i], CommitBlock)), None)
    if commit is None:
        local.append(safety)
    else:
        block = local[commit]
        assert isinstance(block, CommitBlock)
        local[commit] = _CommitWithSafety(block, safety)
    return local + [a for a in head if isinstance(a, _SENDS)] + actions[last + 1:]


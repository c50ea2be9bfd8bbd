"""Virtual time and a faulty network: delay, reordering, duplication, loss, partitions."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

from consensus.certificate import CommitCertificate
from consensus.events import Timeout
from consensus.messages import Proposal, Vote
from consensus.validators import ValidatorSet


class SetSchedule:
    """The validator set of each height: ``initial``, then each (from height, set) change
    (governance in the simulator: known to every node in advance, as a committed
    adoption is). Callable as ``consensus.tendermint.ValidatorsAt``."""

    def __init__(self, initial: ValidatorSet,
                 changes: list[tuple[int, ValidatorSet]] | None = None) -> None:
        self.initial = initial
        self.changes = sorted(changes or [], key=lambda c: c[0])

    def __call__(self, height: int) -> ValidatorSet:
        current = self.initial
        for start, vals in self.changes:
            if height >= start:
                current = vals
        return current

    def ever(self, public_key: bytes) -> bool:
        return public_key in self.initial or any(public_key in v for _, v in self.changes)

# ---- what travels between simulated nodes -----------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposalMsg:
    proposal: Proposal
    block: bytes


@dataclass(frozen=True, slots=True)
class VoteMsg:
    vote: Vote


@dataclass(frozen=True, slots=True)
class CommitMsg:
    certificate: CommitCertificate
    block: bytes


@dataclass(frozen=True, slots=True)
class SyncRequestMsg:
    """A follower that heard a higher height asks a peer for its commit at ``height``
    (stand-in for a node's block download: a follower never speaks in consensus, so no
    peer would otherwise notice it fell behind)."""

    requester: int
    height: int


@dataclass(frozen=True, slots=True)
class BlockRequestMsg:
    requester: int
    height: int
    block_id: bytes


@dataclass(frozen=True, slots=True)
class BlockResponseMsg:
    height: int
    block_id: bytes
    block: bytes


WireMsg = (ProposalMsg | VoteMsg | CommitMsg | BlockRequestMsg | BlockResponseMsg
           | SyncRequestMsg)


@dataclass(frozen=True, slots=True)
class Deliver:
    dst: int
    msg: WireMsg


@dataclass(frozen=True, slots=True)
class Fire:
    node: int
    incarnation: int
    timeout: Timeout


@dataclass(frozen=True, slots=True)
class Fault:
    apply: Callable[[], None]


Item = Deliver | Fire | Fault


class Scheduler:
    """A priority queue of items in virtual milliseconds; ties broken by insertion order."""

    def __init__(self) -> None:
        self.now = 0
        self._heap: list[tuple[int, int, Item]] = []
        self._seq = 0

    def at(self, time: int, item: Item) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(time, self.now), self._seq, item))

    def pop(self) -> Item | None:
        if not self._heap:
            return None
        time, _, item = heapq.heappop(self._heap)
        self.now = time
        return item

    def peek_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None


@dataclass
class LinkConditions:
    """Applied to every message when it is sent."""

    min_delay: int = 1
    max_delay: int = 20
    loss: float = 0.0
    duplicate: float = 0.0


class Network:
    """Sends messages through the scheduler under the current conditions and partition."""

    def __init__(self, scheduler: Scheduler, rng: random.Random, size: int) -> None:
        self._sched, self._rng = scheduler, rng
        self.size = size
        self.conditions = LinkConditions()
        self._group = [0] * size
        self.sent = 0

    def partition(self, groups: list[list[int]]) -> None:
        for gid, members in enumerate(groups):
            for i in members:
                self._group[i] = gid

    def heal(self) -> None:
        self._group = [0] * self.size

    def send(self, src: int, dst: int, msg: WireMsg) -> None:
        if self._group[src] != self._group[dst]:
            return
        cond, rng = self.conditions, self._rng
        copies = 2 if cond.duplicate and rng.random() < cond.duplicate else 1
        for _ in range(copies):
            if cond.loss and rng.random() < cond.loss:
                continue
            self.sent += 1
            delay = rng.randint(cond.min_delay, cond.max_delay)
            self._sched.at(self._sched.now + delay, Deliver(dst, msg))

    def broadcast(self, src: int, msg: WireMsg) -> None:
        for dst in range(self.size):
            if dst != src:
                self.send(src, dst, msg)

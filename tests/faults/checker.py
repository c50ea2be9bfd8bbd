"""The client-side referee: what was acknowledged, and did the network keep its word?

``AckChecker`` records every ``Ack`` the load generators received (record id, index,
the final checkpoint that covered it), and the heights seen during each phase of a
scenario. ``verify`` then checks, against the honest nodes only:

1. no acknowledged record is missing: each is at its acknowledged index, on every node;
2. no record appears twice in the ledger;
3. every honest node has the same root at the same size, and that root is the RFC 9162
   root of the records it serves;
4. every final checkpoint seen is consistent with every later one (verified proofs
   between successive checkpoints; consistency is transitive);
5. progress: whenever 2f+1 validators could talk, the height grew. Heights are sampled
   twice a second; during a stretch of phases with a quorum, the height must not stand
   still for more than ``max_stall_s`` (Tendermint's timeouts grow with the round, so a
   network healing from a long partition may need a few rounds: the bound allows that,
   not a stop).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.records import Envelope
from node.client import Ack
from tests.integration.cluster import Cluster


@dataclass
class Phase:
    name: str
    quorum: bool
    """Could 2f+1 validators talk during this phase?"""
    start_height: int
    end_height: int = -1
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0


@dataclass
class Report:
    acked: int
    refused: int
    errors: int
    ledger_size: int
    checkpoints: int
    phases: int
    quorum_phases: int
    longest_stall_s: float
    """Longest time the height stood still while 2f+1 validators could talk."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class CheckFailed(AssertionError):
    pass


class AckChecker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acks: dict[bytes, Ack] = {}
        self.duplicate_acks: list[bytes] = []
        self.notes: dict[int, Checkpoint] = {}
        self.refused: dict[str, int] = {}
        self.errors: list[str] = []
        self.phases: list[Phase] = []
        self.samples: list[tuple[float, int, bool]] = []
        """(monotonic time, height, quorum?) samples of the network's progress."""

    # --- recording (any thread) --------------------------------------------------------

    def acked(self, ack: Ack) -> None:
        with self._lock:
            if ack.record_id in self.acks:
                self.duplicate_acks.append(ack.record_id)
            self.acks[ack.record_id] = ack
            cp = ack.checkpoint
            seen = self.notes.get(cp.size)
            if seen is not None and seen.root_hash != cp.root_hash:
                self.errors.append(f"two final checkpoints at size {cp.size} differ")
            self.notes[cp.size] = cp

    def refused_with(self, code: str) -> None:
        with self._lock:
            self.refused[code] = self.refused.get(code, 0) + 1

    def error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def begin_phase(self, name: str, quorum: bool, height: int) -> None:
        self.end_phase(height)
        self.phases.append(Phase(name, quorum, height))

    def sample(self, height: int) -> None:
        quorum = bool(self.phases) and self.phases[-1].quorum and self.phases[-1].end_height < 0
        self.samples.append((time.monotonic(), height, quorum))

    def end_phase(self, height: int) -> None:
        if self.phases and self.phases[-1].end_height < 0:
            last = self.phases[-1]
            last.end_height = height
            last.seconds = time.monotonic() - last.started

    # --- the verdict -------------------------------------------------------------------

    def verify(self, cluster: Cluster, honest: list[str], max_stall_s: float = 20.0) -> Report:
        """Raise ``CheckFailed`` naming the first broken promise; else return the figures."""
        if self.duplicate_acks:
            raise CheckFailed(f"{len(self.duplicate_acks)} records acknowledged twice")
        if any(e.startswith("two final") or "fork" in e.lower() for e in self.errors):
            raise CheckFailed(f"client saw conflicting checkpoints: {self.errors}")
        size = max([a.checkpoint.size for a in self.acks.values()] + [0])
        root = cluster.wait_same_root(honest, _settled_size(cluster, honest, size), 120)
        records = _read_all(cluster, honest[0])
        self._check_records(records, root)
        for name in honest[1:]:  # same root at the same size: identical ledgers
            _h, n, other = cluster.status(name)
            if n != len(records) or other != root:
                raise CheckFailed(f"{name} has size {n}, root {other.hex()[:16]}")
        self._check_checkpoints(cluster, honest[0])
        stall = self.longest_stall()
        if stall > max_stall_s:
            raise CheckFailed(f"no progress for {stall:.1f} s although 2f+1 validators could"
                              f" talk (bound {max_stall_s} s); phases: {self._phase_log()}")
        return Report(len(self.acks), sum(self.refused.values()), len(self.errors),
                      len(records), len(self.notes), len(self.phases),
                      sum(p.quorum for p in self.phases), round(stall, 1))

    def longest_stall(self) -> float:
        """Longest run of quorum samples without the height growing."""
        longest, since, best = 0.0, None, -1
        for t, height, quorum in self.samples:
            if not quorum:
                since = None
                continue
            if since is None or height > best:
                since, best = t, max(best, height)
            longest = max(longest, t - since)
        return longest

    def _phase_log(self) -> list[str]:
        return [f"{p.name} {p.start_height}->{p.end_height} {p.seconds:.1f}s"
                for p in self.phases[-12:]]

    def _check_records(self, records: list[bytes], root: bytes) -> None:
        index_of: dict[bytes, int] = {}
        for i, raw in enumerate(records):
            rid = Envelope.from_bytes(raw).record_id
            if rid in index_of:
                raise CheckFailed(f"record {rid.hex()[:16]} at {index_of[rid]} and {i}")
            index_of[rid] = i
        lost = [a for a in self.acks.values() if index_of.get(a.record_id) != a.index]
        if lost:
            raise CheckFailed(f"{len(lost)} acknowledged records missing or moved, e.g."
                              f" {lost[0].record_id.hex()[:16]} at {lost[0].index}")
        if merkle.root(merkle.leaf_hashes(records)) != root:
            raise CheckFailed("the served records do not hash to the node's root")

    def _check_checkpoints(self, cluster: Cluster, via: str) -> None:
        ordered = [self.notes[s] for s in sorted(self.notes)]
        with cluster.client(cluster._reader(via), via=via, timeout=30) as client:
            for old, new in itertools.pairwise(ordered):
                proof = client.consistency_proof(old.size, new.size) if old.size else []
                if old.size:
                    merkle.verify_consistency(old.size, new.size, old.root_hash,
                                              new.root_hash, proof)


def _settled_size(cluster: Cluster, honest: list[str], at_least: int) -> int:
    """The size the honest nodes converge on once the load stopped (>= the last ack)."""
    deadline = time.monotonic() + 60
    while True:
        sizes = {cluster.status(name)[1] for name in honest}
        if len(sizes) == 1 and min(sizes) >= at_least:
            return sizes.pop()
        if time.monotonic() > deadline:
            return max(max(sizes), at_least)
        time.sleep(0.5)


def _read_all(cluster: Cluster, via: str) -> list[bytes]:
    size = cluster.status(via)[1]
    out: list[bytes] = []
    if size == 0:
        return out
    with cluster.client(cluster._reader(via), via=via, timeout=60) as client:
        for committed in client.watch(from_index=0):
            if committed.index != len(out):
                raise CheckFailed(f"watch skipped from {len(out)} to {committed.index}")
            out.append(committed.envelope)
            if len(out) == size:
                break
    return out

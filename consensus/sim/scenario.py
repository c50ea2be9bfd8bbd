"""A whole simulated run, drawn from one seed: cluster, Byzantine roles, faults, timings."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from consensus.sim.nodes import Behavior
from consensus.sim.world import LinkConditions

SIZES = (4, 7, 10)
BYZANTINE_ROLES = (
    Behavior.SILENT,
    Behavior.EQUIVOCATING_PROPOSER,
    Behavior.DOUBLE_VOTER,
    Behavior.INVALID_PROPOSER,
    Behavior.REPLAYER,
)


@dataclass(frozen=True)
class Partition:
    start: int
    end: int
    groups: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Crash:
    node: int
    at: int
    restart_at: int
    after_actions: int
    """Crash while executing the node's next step, after this many of its actions."""


@dataclass(frozen=True)
class Scenario:
    seed: int
    n: int
    powers: tuple[int, ...]
    byzantine: dict[int, Behavior]
    chaos_ms: int
    """Faults happen in [0, chaos_ms); then the network heals and crashed nodes restart."""
    chaos_link: LinkConditions
    calm_link: LinkConditions
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]
    liveness_ms: int = 60_000
    """After healing, every honest node must commit ``extra_heights`` more within this."""
    extra_heights: int = 2
    set_changes: tuple[tuple[int, tuple[int, ...]], ...] = ()
    """Validator-set changes (governance): (from height, member node indices, power 1
    each). Before the first, the set is every node with ``powers``. A node outside a
    height's set follows it without voting."""
    min_height: int = 0
    """Every honest node must also reach this height (past the last set change)."""

    def describe(self) -> str:
        roles = ",".join(f"{i}:{b.value}" for i, b in sorted(self.byzantine.items())) or "none"
        return (
            f"seed={self.seed} n={self.n} powers={list(self.powers)} byzantine={roles} "
            f"chaos_ms={self.chaos_ms} link={self.chaos_link} partitions={len(self.partitions)} "
            f"crashes={len(self.crashes)}"
        )


PROFILES = ("mixed", "split-brain", "membership")


def make_scenario(seed: int, n: int | None = None, profile: str = "mixed") -> Scenario:
    """Everything is drawn from ``random.Random(seed)``: one seed, one run.

    ``mixed`` draws every kind of fault; ``split-brain`` is n = 4 with equal power, one
    double voter and forty overlapping partitions in 5 s: where a node that forgets its
    lock breaks agreement.
    """
    if profile == "split-brain":
        return _split_brain(seed)
    if profile == "membership":
        return _membership(seed)
    if profile != "mixed":
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    rng = random.Random(seed)
    n = n if n is not None else rng.choice(SIZES)
    weighted = rng.random() < 0.3
    powers = tuple(rng.randint(1, 3) if weighted else 1 for _ in range(n))
    byzantine = _byzantine(rng, powers)
    chaos_ms = rng.randint(300, 3000)
    honest = [i for i in range(n) if i not in byzantine]
    return Scenario(
        seed=seed,
        n=n,
        powers=powers,
        byzantine=byzantine,
        chaos_ms=chaos_ms,
        chaos_link=_chaos_link(rng),
        calm_link=LinkConditions(1, rng.randint(5, 50), 0.0, 0.0),
        partitions=tuple(_partition(rng, n, chaos_ms) for _ in range(rng.randint(0, 3))),
        crashes=tuple(_crash(rng, honest, chaos_ms) for _ in range(rng.randint(0, 2))),
    )


def _byzantine(rng: random.Random, powers: tuple[int, ...]) -> dict[int, Behavior]:
    """Up to f Byzantine validators, holding strictly less than 1/3 of the power."""
    n, total = len(powers), sum(powers)
    chosen = rng.sample(range(n), rng.randint(0, (n - 1) // 3))
    while chosen and 3 * sum(powers[i] for i in chosen) >= total:
        chosen.pop()
    return {i: rng.choice(BYZANTINE_ROLES) for i in chosen}


def _chaos_link(rng: random.Random) -> LinkConditions:
    low = rng.randint(1, 10)
    loss = 0.0 if rng.random() < 0.3 else rng.uniform(0.0, 0.3)
    duplicate = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, 0.2)
    return LinkConditions(low, low + rng.randint(10, 300), loss, duplicate)


def _partition(rng: random.Random, n: int, chaos_ms: int) -> Partition:
    start = rng.randrange(chaos_ms)
    end = rng.randint(start + 1, chaos_ms)
    order = list(range(n))
    rng.shuffle(order)
    cut = sorted(rng.sample(range(1, n), rng.randint(1, 2)))
    bounds = [0, *cut, n]
    groups = tuple(tuple(order[a:b]) for a, b in itertools.pairwise(bounds))
    return Partition(start, end, groups)


def _crash(rng: random.Random, honest: list[int], chaos_ms: int) -> Crash:
    at = rng.randrange(chaos_ms)
    return Crash(rng.choice(honest), at, rng.randint(at + 1, chaos_ms), rng.randint(0, 3))


def _split_brain(seed: int) -> Scenario:
    rng = random.Random(seed)
    chaos_ms = 5000
    byzantine = {rng.randrange(4): Behavior.DOUBLE_VOTER}
    return Scenario(
        seed=seed,
        n=4,
        powers=(1, 1, 1, 1),
        byzantine=byzantine,
        chaos_ms=chaos_ms,
        chaos_link=LinkConditions(1, rng.randint(20, 200), rng.uniform(0.0, 0.3), 0.0),
        calm_link=LinkConditions(1, 20, 0.0, 0.0),
        partitions=tuple(_partition(rng, 4, chaos_ms) for _ in range(40)),
        crashes=(),
    )


def _membership(seed: int) -> Scenario:
    """Six nodes, four validators at first; the set grows to five (node 4 joins), then
    swaps node 0 for node 5, then shrinks to four (node 1 leaves), at drawn heights, under
    the mixed profile's link faults, partitions and crashes. At most one Byzantine node,
    among those in every set."""
    rng = random.Random(seed)
    n = 6
    first = rng.randint(2, 4)
    second = first + rng.randint(1, 3)
    third = second + rng.randint(1, 3)
    changes = ((first, (0, 1, 2, 3, 4)), (second, (1, 2, 3, 4, 5)), (third, (2, 3, 4, 5)))
    initial = (0, 1, 2, 3)
    byzantine = ({rng.choice((2, 3)): rng.choice(BYZANTINE_ROLES)}
                 if rng.random() < 0.5 else {})
    chaos_ms = rng.randint(300, 3000)
    honest = [i for i in range(n) if i not in byzantine]
    return Scenario(
        seed=seed,
        n=n,
        powers=tuple(1 if i in initial else 0 for i in range(n)),
        byzantine=byzantine,
        chaos_ms=chaos_ms,
        chaos_link=_chaos_link(rng),
        calm_link=LinkConditions(1, rng.randint(5, 50), 0.0, 0.0),
        partitions=tuple(_partition(rng, n, chaos_ms) for _ in range(rng.randint(0, 2))),
        crashes=tuple(_crash(rng, honest, chaos_ms) for _ in range(rng.randint(0, 2))),
        set_changes=changes,
        min_height=third + 2,
    )

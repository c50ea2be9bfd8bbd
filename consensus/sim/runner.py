"""Run one seeded scenario to completion, checking invariants after every step."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace

from consensus.crypto import Ed25519Signer
from consensus.events import ConsensusConfig
from consensus.sim.monitor import InvariantViolation, Monitor, SignatureCache
from consensus.sim.nodes import Behavior, SimContext, SimNode
from consensus.sim.scenario import Scenario, make_scenario
from consensus.sim.world import (
    Deliver,
    Fault,
    Fire,
    LinkConditions,
    Network,
    Scheduler,
    SetSchedule,
)
from consensus.validators import Validator, ValidatorSet

CHAIN_ID = b"shadowledger-sim"
SIM_CONFIG = ConsensusConfig(
    chain_id=CHAIN_ID,
    timeout_propose_ms=300,
    timeout_prevote_ms=200,
    timeout_precommit_ms=200,
    timeout_delta_ms=100,
    retry_interval_ms=500,
)
MAX_STEPS = 2_000_000


@dataclass(frozen=True)
class SeedResult:
    seed: int
    n: int
    ok: bool
    violation: str | None
    heights: int
    virtual_ms: int
    steps: int
    evidence: int
    reproduce: str


def reproduce_command(seed: int, n: int | None, profile: str = "mixed") -> str:
    size = "" if n is None else f" --n {n}"
    kind = "" if profile == "mixed" else f" --profile {profile}"
    return f"python -m consensus.sim --seed {seed}{size}{kind}"


def validator_seed(seed: int, index: int) -> bytes:
    """Keys come from the run's seed, so a seed reproduces the very same signatures."""
    return hashlib.sha256(b"shadowledger/sim-key\n%d\n%d" % (seed, index)).digest()


class Simulation:
    def __init__(self, scenario: Scenario, config: ConsensusConfig = SIM_CONFIG) -> None:
        self.scenario = scenario
        rng = random.Random(scenario.seed ^ 0x5EED)
        signers = [Ed25519Signer(validator_seed(scenario.seed, i)) for i in range(scenario.n)]
        keys = [s.public_key for s in signers]
        validators = ValidatorSet(tuple(
            Validator(k, p) for k, p in zip(keys, scenario.powers, strict=True) if p > 0
        ))
        changes = [
            (height, ValidatorSet.equal(keys[i] for i in members))
            for height, members in scenario.set_changes
        ]
        honest = {keys[i] for i in range(scenario.n) if i not in scenario.byzantine}
        self.scheduler = Scheduler()
        self.network = Network(self.scheduler, rng, scenario.n)
        self.network.conditions = scenario.chaos_link
        cache = SignatureCache()
        schedule = SetSchedule(validators, changes)
        monitor = Monitor(schedule, config.chain_id, honest, cache)
        self.ctx = SimContext(
            config, schedule, keys, self.network, self.scheduler, monitor, cache, rng
        )
        self.nodes = [
            SimNode(i, signers[i], scenario.byzantine.get(i, Behavior.HONEST), self.ctx)
            for i in range(scenario.n)
        ]
        self.honest = [node for node in self.nodes if node.honest]
        self.target: int | None = None
        self.steps = 0

    def run(self) -> None:
        """Raise ``InvariantViolation`` on the first breach, including lost liveness."""
        self._schedule_faults()
        for node in self.nodes:
            node.start()
        deadline = self.scenario.chaos_ms + self.scenario.liveness_ms
        while not self._done():
            item = self.scheduler.pop()
            if item is None or self.scheduler.now > deadline or self.steps > MAX_STEPS:
                self._liveness_failed()
            self.steps += 1
            self._dispatch(item)

    def _dispatch(self, item: Deliver | Fire | Fault | None) -> None:
        if isinstance(item, Deliver):
            self.nodes[item.dst].deliver(item.msg)
        elif isinstance(item, Fire):
            self.nodes[item.node].fire(item)
        elif isinstance(item, Fault):
            item.apply()

    def _done(self) -> bool:
        if self.target is None:
            return False
        return all(node.height >= self.target for node in self.honest)

    def _liveness_failed(self) -> None:
        heights = [node.height for node in self.honest]
        raise InvariantViolation(
            "liveness",
            f"honest heights {heights} did not reach {self.target} within "
            f"{self.scenario.liveness_ms} ms after healing",
        )

    def _schedule_faults(self) -> None:
        sched, net, sc = self.scheduler, self.network, self.scenario
        for part in sc.partitions:
            groups = [list(g) for g in part.groups]
            sched.at(part.start, Fault(lambda g=groups: net.partition(g)))  # type: ignore[misc]
            sched.at(part.end, Fault(net.heal))
        for crash in sc.crashes:
            node = self.nodes[crash.node]
            sched.at(crash.at, Fault(lambda n=node, k=crash.after_actions: _arm(n, k)))  # type: ignore[misc]
            sched.at(crash.restart_at, Fault(lambda n=node: _restart(n)))  # type: ignore[misc]
        sched.at(sc.chaos_ms, Fault(self._heal))

    def _heal(self) -> None:
        """End of chaos: calm links, no partition, every crashed node back up."""
        self.network.heal()
        self.network.conditions = self.scenario.calm_link
        for node in self.nodes:
            _restart(node)
        self.target = max(max(node.height for node in self.honest) + self.scenario.extra_heights,
                          self.scenario.min_height)


def _arm(node: SimNode, after_actions: int) -> None:
    if node.machine is not None:
        node.crash_after = after_actions


def _restart(node: SimNode) -> None:
    node.crash_after = None
    if node.machine is None:
        node.start()


def run_seed(
    seed: int,
    n: int | None = None,
    config: ConsensusConfig = SIM_CONFIG,
    profile: str = "mixed",
) -> SeedResult:
    scenario = make_scenario(seed, n, profile)
    sim = Simulation(scenario, config)
    violation: str | None = None
    try:
        sim.run()
    except InvariantViolation as exc:
        violation = str(exc)
    return SeedResult(
        seed=seed,
        n=scenario.n,
        ok=violation is None,
        violation=violation,
        heights=max(node.height for node in sim.honest),
        virtual_ms=sim.scheduler.now,
        steps=sim.steps,
        evidence=len(sim.ctx.monitor.evidence),
        reproduce=reproduce_command(seed, n, profile),
    )


def unsafe_config(**changes: object) -> ConsensusConfig:
    """SIM_CONFIG with changed fields (tests use it to switch the lock rule off)."""
    return replace(SIM_CONFIG, **changes)  # type: ignore[arg-type]


__all__ = ["SIM_CONFIG", "LinkConditions", "SeedResult", "Simulation", "run_seed"]

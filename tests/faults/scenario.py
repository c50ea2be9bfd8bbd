"""Seeded fault campaigns: a random (but reproducible) sequence of faults under load.

Each step picks a fault, holds it for a few seconds while the load keeps submitting, then
undoes it (restart, heal) and gives the network a moment to recover. Every step is a
``Phase`` of the ``AckChecker``: the phase says whether 2f+1 validators could talk, so
the checker can demand progress exactly then. With 4 validators (f = 1) at most one
validator is faulty at a time, except in ``split`` (2 | 2: no quorum, no progress owed).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.faults.checker import AckChecker
from tests.faults.harness import VALIDATORS, FaultCluster, Load, seeded
from tests.faults.proxy import ProxyMesh

FAULTS = ("kill", "isolate", "split", "slow", "calm")
SKEWED = {"health-insurance": 3_600_000, "statistics-office": -3_600_000}
"""Wall-clock offsets (ms): one validator an hour ahead, one an hour behind."""


@dataclass
class CampaignStats:
    steps: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    partitions: int = 0
    slow_links: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"steps": dict(self.steps), "kills": self.kills, "partitions": self.partitions,
                "slow_links": self.slow_links}


@dataclass
class Campaign:
    cluster: FaultCluster
    checker: AckChecker
    rng: random.Random
    hold_s: tuple[float, float] = (3.0, 6.0)
    recover_s: float = 4.0
    stats: CampaignStats = field(default_factory=CampaignStats)
    victims: tuple[str, ...] = tuple(VALIDATORS)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start_sampling(self) -> Campaign:
        """Record the network's height twice a second (the checker's progress rule)."""
        threading.Thread(target=self._sample, name="progress", daemon=True).start()
        return self

    def stop_sampling(self) -> None:
        self._stopped.set()

    def _sample(self) -> None:
        while not self._stopped.wait(0.5):
            self.checker.sample(self._height())

    def run(self, duration_s: float, faults: tuple[str, ...] = FAULTS) -> CampaignStats:
        until = time.monotonic() + duration_s
        while time.monotonic() < until:
            self.step(self.rng.choice(faults))
        self.checker.end_phase(self._height())
        return self.stats

    def step(self, fault: str) -> None:
        self.stats.steps[fault] += 1
        getattr(self, f"_{fault}")(self.rng.uniform(*self.hold_s))
        self._phase("recover", True)
        time.sleep(self.recover_s)

    # --- the faults --------------------------------------------------------------------

    def _kill(self, hold: float) -> None:
        victim = self.rng.choice(self.victims)
        time.sleep(self.rng.uniform(0.0, 1.5))  # a random moment, under load
        self.cluster.kill(victim)
        self.stats.kills += 1
        self._phase(f"kill {victim}", True)
        time.sleep(hold)
        self.cluster.restart(victim)

    def _isolate(self, hold: float) -> None:
        victim = self.rng.choice(self.victims)
        self._mesh().isolate(victim)
        self.stats.partitions += 1
        self._phase(f"isolate {victim}", True)
        time.sleep(hold)
        self._mesh().heal()

    def _split(self, hold: float) -> None:
        shuffled = list(VALIDATORS)
        self.rng.shuffle(shuffled)
        left, right = shuffled[:2], shuffled[2:]
        self._mesh().partition([*left, "audit-office"], right)
        self.stats.partitions += 1
        self._phase(f"split {'+'.join(left)} | {'+'.join(right)}", False)
        time.sleep(hold)
        self._mesh().heal()

    def _slow(self, hold: float) -> None:
        victim = self.rng.choice(self.victims)
        delay = self.rng.choice((0.02, 0.05, 0.1))
        self._mesh().slow(victim, delay, bytes_per_s=self.rng.choice((0, 256 * 1024)))
        self.stats.slow_links += 1
        self._phase(f"slow {victim} {delay * 1000:.0f}ms", True)
        time.sleep(hold)
        self._mesh().heal()

    def _calm(self, hold: float) -> None:
        self._phase("calm", True)
        time.sleep(hold)

    # --- helpers -----------------------------------------------------------------------

    def _phase(self, name: str, quorum: bool) -> None:
        self.checker.begin_phase(name, quorum, self._height())

    def _height(self) -> int:
        return self.cluster.height([v for v in VALIDATORS if self.cluster.alive(v)])

    def _mesh(self) -> ProxyMesh:
        assert self.cluster.mesh is not None
        return self.cluster.mesh


@contextmanager
def loaded_campaign(cluster: FaultCluster, seed: int, rate: float,
                    **tuning: Any) -> Iterator[Campaign]:
    """Start ``cluster`` with skewed clocks and load from every agency; yield a sampling
    ``Campaign`` to run faults with; afterwards stop the load, heal every link and restart
    any validator left down, so the checker can verify."""
    for agency, offset in SKEWED.items():
        cluster.set_config(agency, "node", "clock_offset_ms", str(offset))
    cluster.start_all()
    checker = AckChecker()
    loads = [Load(cluster, agency, checker, rate=rate).start() for agency in VALIDATORS]
    campaign = Campaign(cluster, checker, seeded(seed), **tuning).start_sampling()
    try:
        yield campaign
        checker.end_phase(campaign._height())
    finally:
        campaign.stop_sampling()
        for load in loads:
            load.stop()
    campaign._mesh().heal()
    for agency in VALIDATORS:
        if not cluster.alive(agency):
            cluster.restart(agency)

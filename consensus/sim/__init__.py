"""Deterministic simulator: N validators, seeded RNG, virtual time, faults, invariants.

``python -m consensus.sim --seeds N`` runs a campaign; ``--seed S`` reproduces one run.
"""

from consensus.sim.monitor import InvariantViolation
from consensus.sim.runner import SIM_CONFIG, SeedResult, Simulation, reproduce_command, run_seed
from consensus.sim.scenario import Scenario, make_scenario

__all__ = [
    "SIM_CONFIG",
    "InvariantViolation",
    "Scenario",
    "SeedResult",
    "Simulation",
    "make_scenario",
    "reproduce_command",
    "run_seed",
]

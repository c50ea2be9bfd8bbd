"""Sharing events under agreements vs anchors: what the sharing policy costs in throughput.

    python -m bench.bench_policy                 # 3 rounds of 20 s phases, 8 clients
    python -m bench.bench_policy --quick         # 2 rounds of 6 s phases, 4 clients
    python -m bench.bench_policy --rounds 4 --duration 30

One fresh 4-validator network (bench_cluster.LedgerNetwork) on 127.0.0.1. Each agency
first agrees with the next one (drafted, countersigned, committed through the client).
Then two pools of K client workers (each worker is agency i mod 4 on its own node, with
records signed before the clock starts) run closed-loop phases of W records in flight,
alternating (in ABBA order, so that a trend in the machine's load hits both alike):
anchors (no policy beyond the author's role) and sharing events under the agency's
agreement (every validator checks each against the agreement at the block's
time, at admission and in block validity). Alternating phases in one run on one network
lets the shared machine's noise hit both kinds alike; the figure to read is the ratio
sharing / anchor of the summed throughputs. Every process it starts is stopped.

First, in-process: the policy check's own cost per record in a block (``policy.check_us``,
from the facts the mempool caches; best of 30), for anchors and for sharing events.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.bench_cluster import (
    AGENCIES,
    LedgerNetwork,
    WorkerPool,
    WorkerSpec,
    _connect,
    _emit,
    _phase_row,
    _run_phase,
    phase_stats,
)

DATASET, PURPOSE = "income", "benefit-eligibility"


@dataclass(frozen=True)
class PolicySettings:
    duration: float
    warmup: float
    clients: int
    window: int
    rounds: int
    max_rate: float
    """Records/s the closed loop is provisioned (pre-signed) for, per kind and phase."""
    drain_timeout: float = 60.0


FULL = PolicySettings(duration=20.0, warmup=4.0, clients=8, window=128, rounds=3,
                      max_rate=4_000)
QUICK = PolicySettings(duration=6.0, warmup=2.0, clients=4, window=64, rounds=2,
                       max_rate=2_500)


def make_agreements(network: LedgerNetwork) -> dict[str, tuple[str, ...]]:
    """Agency i provides DATASET to agency i+1: its workers' ``sharing`` terms, by agency."""
    from node.config import load_client_profile, read_signing_key

    keys = {}
    for agency in AGENCIES:
        record_key = load_client_profile(network.profile(agency)).record_key
        assert record_key is not None
        keys[agency] = read_signing_key(record_key)
    terms = {}
    now = int(time.time() * 1000)
    for i, provider in enumerate(AGENCIES):
        recipient = AGENCIES[(i + 1) % len(AGENCIES)]
        with _connect(str(network.profile(provider))) as client:
            draft = client.draft_agreement(
                keys[provider], provider=provider, recipient=recipient, datasets=[DATASET],
                purpose=PURPOSE, legal_basis="Benchmark Act s.1", valid_from_ms=now - 60_000,
                valid_until_ms=now + 24 * 3600 * 1000)
            consent = client.countersign_agreement(draft, keys[recipient])
            aid = client.submit_agreement(consent, keys[provider]).record_id
        terms[provider] = (aid.hex(), provider, recipient, DATASET, PURPOSE)
    return terms


def check_cost(results: list[dict[str, Any]], records: int = 2000, repeats: int = 30) -> None:
    """In-process: the policy check of a block's records from their cached facts (what each
    validator does per proposed block), best of ``repeats``, in us per record."""
    from ledger.policy import PolicyView, block_facts, check_records
    from tests.ledger.policy_helpers import RULES, agreement, anchor, event

    a = agreement(valid=(0, 1 << 50))
    base = PolicyView(RULES)
    check_records(base, block_facts([a.raw], RULES.keyring), 1_000)
    kinds = {"anchor": [anchor().raw for _ in range(records)],
             "sharing_event": [event(a.record_id).raw for _ in range(records)]}
    for kind, raws in kinds.items():
        facts = block_facts(raws, RULES.keyring)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            check_records(PolicyView(RULES, base.changes), facts, 5_000)
            best = min(best, time.perf_counter() - started)
        _emit(results, bench="policy.check_us", impl="shadowledger", records=kind,
              value=round(best / records * 1e6, 3), unit="us/record", block_records=records,
              repeats=repeats)


def run(quick: bool = False, duration: float | None = None, rounds: int | None = None
        ) -> list[dict[str, Any]]:
    s = QUICK if quick else FULL
    if duration is not None:
        s = replace(s, duration=duration, warmup=min(s.warmup, duration / 3))
    if rounds is not None:
        s = replace(s, rounds=rounds)
    results: list[dict[str, Any]] = []
    check_cost(results)
    k = s.clients
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp, \
            LedgerNetwork(Path(tmp) / "net") as network:
        terms = make_agreements(network)
        profiles = [str(network.profile(AGENCIES[i % 4])) for i in range(k)]
        anchor_specs = [WorkerSpec(i, "shadowledger", profile=p) for i, p in enumerate(profiles)]
        sharing_specs = [WorkerSpec(i, "shadowledger", profile=p,
                                    sharing=terms[AGENCIES[i % 4]])
                         for i, p in enumerate(profiles)]
        per_worker = int(s.max_rate * s.duration / k) * s.rounds + s.window + 100
        pids = network.pids
        totals = {"anchor": 0.0, "sharing_event": 0.0}
        with WorkerPool(anchor_specs) as anchors, WorkerPool(sharing_specs) as sharing:
            anchors.prepare(per_worker, timeout=900)
            sharing.prepare(per_worker, timeout=900)
            pairs = [("anchor", anchors), ("sharing_event", sharing)]
            for round_ in range(s.rounds):  # ABBA order: a load trend hits both kinds alike
                for kind, pool in pairs if round_ % 2 == 0 else pairs[::-1]:
                    res, start, cpu = _run_phase(pool, kind, k, s.duration, 0.0, s.window,
                                                 s.drain_timeout, pids)
                    stats = phase_stats(res, start, s.duration, s.warmup)
                    totals[kind] += stats.throughput
                    _emit(results, bench="policy.throughput", impl="shadowledger",
                          records=kind, round=round_, value=round(stats.throughput),
                          unit="records/s", mode="closed-loop", window=s.window,
                          duration_s=s.duration, warmup_s=s.warmup, cpu_cores=cpu,
                          **_phase_row(stats, k))
        _emit(results, bench="policy.ratio", impl="shadowledger",
              value=round(totals["sharing_event"] / totals["anchor"], 3)
              if totals["anchor"] else None, unit="sharing/anchor", rounds=s.rounds,
              anchor_mean=round(totals["anchor"] / s.rounds),
              sharing_mean=round(totals["sharing_event"] / s.rounds), clients=k,
              window=s.window, duration_s=s.duration)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke: 2 rounds of 6 s")
    parser.add_argument("--duration", type=float, help="seconds per phase")
    parser.add_argument("--rounds", type=int, help="anchor/sharing phase pairs")
    args = parser.parse_args(argv)
    run(quick=args.quick, duration=args.duration, rounds=args.rounds)


if __name__ == "__main__":
    main()

"""Short cluster phases for comparing two versions of the code side by side.

    python -m bench.cluster_phases --duration 15 peak 600

A fresh 4-validator network and 16 client workers, exactly as ``bench.bench_cluster``
builds them, then one phase per argument: ``peak`` (closed loop, 256 in flight per
stream) or a rate in records/s (open loop). One JSON line per phase: throughput, latency
p50/p99, committed blocks/s, CPU cores of the nodes, the clients and everything else on
the machine ("others"). The nodes run the code of the current directory, so running this
from two checkouts alternately (A B B A) compares them on the same busy machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.bench_cluster import (
    AGENCIES,
    LedgerNetwork,
    WorkerPool,
    WorkerSpec,
    _delta,
    _run_phase,
    phase_stats,
)

CLIENTS, WINDOW = 16, 256


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("phases", nargs="+", help="'peak' or a rate in records/s")
    args = parser.parse_args(argv)
    rates = [0.0 if p == "peak" else float(p) for p in args.phases]
    with tempfile.TemporaryDirectory(prefix="bench-phases-") as tmp, \
            LedgerNetwork(Path(tmp) / "net") as network:
        pids = network.pids
        specs = [WorkerSpec(i, "shadowledger", profile=str(network.profile(AGENCIES[i % 4])))
                 for i in range(CLIENTS)]
        with WorkerPool(specs) as pool:
            for name, rate in zip(args.phases, rates, strict=True):
                pool.prepare(int((rate or 4000) * args.duration / CLIENTS) + WINDOW + 100,
                             timeout=600)
                first = network.validators[0].agency
                before = network.metrics()[first]
                window = WINDOW if not rate else max(4 * WINDOW, int(rate / CLIENTS * 10))
                results, start, cpu = _run_phase(pool, name, CLIENTS, args.duration, rate,
                                                 window, 60.0, pids)
                after = network.metrics()[first]
                stats = phase_stats(results, start, args.duration, min(5.0, args.duration / 3))
                blocks = _delta(after, before, "shadowledger_blocks_committed_total")
                write_s = _delta(after, before, "shadowledger_block_write_seconds_sum")
                records = _delta(after, before, "shadowledger_records_committed_total")
                checks = _delta(after, before, "shadowledger_record_signature_checks_total")
                gossips = _delta(after, before, "shadowledger_gossip_messages_sent")
                merged = _delta(after, before, "shadowledger_gossip_batches_merged")
                print(json.dumps({
                    "phase": name, "records_per_s": round(stats.throughput),
                    "p50_ms": round(stats.p50_ms), "p99_ms": round(stats.p99_ms),
                    "blocks_per_s": round(blocks / (args.duration + 1), 2),
                    "records_per_block": round(records / blocks) if blocks else None,
                    "block_write_ms": round(1000 * write_s / blocks, 1) if blocks else None,
                    "checks_per_record": round(checks / records, 2) if records else None,
                    "gossip_messages_per_s": round(gossips / (args.duration + 1)),
                    "gossip_batches_merged_per_s": round(merged / (args.duration + 1)),
                    "extra_rounds": _delta(after, before,
                                           "shadowledger_consensus_extra_rounds_total"),
                    "node_cores": round(sum(v for n, v in cpu.items() if n in pids), 2),
                    "client_cores": cpu["clients"], "other_cores": cpu["others"],
                    "refused": stats.refused, "errors": stats.errors,
                }), flush=True)


if __name__ == "__main__":
    main()

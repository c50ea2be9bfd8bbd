"""The soak: a long seeded fault campaign under load, then the full check.

``python -m tests.faults.soak --minutes 30 [--seed N] [--dir DIR]`` (``make soak``) runs a
local network with every peer link through the fault proxy, one validator an hour
ahead and one an hour behind, load from every agency, and periodic kills -9, partitions
(one node isolated, or a 2 | 2 split) and slow links until the time is up. Then it heals
everything, stops the load, verifies (tests/faults/checker.py) and prints one JSON line
with the figures. It stops by itself; exit code 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.checker import CheckFailed
from tests.faults.harness import OBSERVER, VALIDATORS, fault_cluster
from tests.faults.scenario import loaded_campaign


def soak(folder: Path, minutes: float, seed: int, rate: float) -> dict[str, object]:
    started = time.monotonic()
    with fault_cluster(folder, start=False) as cluster:
        with loaded_campaign(cluster, seed, rate) as campaign:
            campaign.run(minutes * 60)
        checker = campaign.checker
        summary: dict[str, object] = {"seed": seed, "minutes": minutes, "rate_per_agency": rate}
        try:
            report = checker.verify(cluster, [*VALIDATORS, OBSERVER])
            summary.update(ok=not checker.errors, **report.as_dict())
        except CheckFailed as exc:
            summary.update(ok=False, failure=str(exc))
        summary.update(campaign.stats.as_dict(), refused_by_code=checker.refused,
                       client_errors=checker.errors[:5], kills_total=cluster.kills,
                       restarts=cluster.restarts,
                       wall_seconds=round(time.monotonic() - started, 1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--rate", type=float, default=25.0, help="records/s per agency")
    parser.add_argument("--dir", type=Path, default=None, help="keep the network here")
    args = parser.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="soak-")) / "net"
    summary = soak(folder, args.minutes, args.seed, args.rate)
    summary["dir"] = str(folder)
    print(json.dumps(summary), flush=True)
    return 0 if summary.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())

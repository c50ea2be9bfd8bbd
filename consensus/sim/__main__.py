"""CLI: ``python -m consensus.sim --seeds N`` (campaign) or ``--seed S`` (reproduce one).

Prints a human summary, then one JSON line; exits 1 if any seed broke an invariant.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Iterator

from consensus.sim.runner import SeedResult, run_seed
from consensus.sim.scenario import PROFILES, make_scenario


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m consensus.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed of the campaign")
    parser.add_argument("--seed", type=int, help="run exactly this seed, verbosely")
    parser.add_argument("--n", type=int, choices=(4, 7, 10), help="force the cluster size")
    parser.add_argument("--profile", choices=PROFILES, default="mixed", help="fault mix")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    return parser.parse_args(argv)


def _one(args: tuple[int, int | None, str]) -> SeedResult:
    return run_seed(args[0], args[1], profile=args[2])


def _results(seeds: range, n: int | None, profile: str, jobs: int) -> Iterator[SeedResult]:
    work = [(seed, n, profile) for seed in seeds]
    if jobs <= 1:
        yield from map(_one, work)
        return
    with multiprocessing.Pool(jobs) as pool:
        yield from pool.imap_unordered(_one, work, chunksize=16)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    seeds = range(args.seed, args.seed + 1) if args.seed is not None else range(
        args.start, args.start + args.seeds
    )
    if args.seed is not None:
        print(make_scenario(args.seed, args.n, args.profile).describe())
    began = time.perf_counter()
    failures: list[SeedResult] = []
    total = 0
    for result in _results(seeds, args.n, args.profile, args.jobs):
        total += 1
        if not result.ok:
            failures.append(result)
            print(f"VIOLATION seed={result.seed} n={result.n}: {result.violation}")
            print(f"  reproduce: {result.reproduce}")
        elif args.seed is not None:
            print(f"ok: {result}")
    elapsed = time.perf_counter() - began
    print(f"{total} seeds, {len(failures)} with violations, {elapsed:.1f} s")
    summary = {
        "sim": "consensus", "seeds": total, "first_seed": seeds.start, "n": args.n,
        "profile": args.profile,
        "violations": len(failures), "failing_seeds": sorted(r.seed for r in failures),
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

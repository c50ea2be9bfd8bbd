"""`make bench`: run every benchmark; each prints one JSON object per line.

    python -m bench                 # everything, full sizes
    python -m bench --quick         # small sizes: a smoke run
    python -m bench --only tree     # one module (bench_tree.py)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import time
from pathlib import Path

MODULES = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", help="module suffix, e.g. tree")
    args = parser.parse_args()
    print(json.dumps({"bench": "meta", "python": platform.python_version(),
                      "machine": platform.machine(), "started": time.time()}), flush=True)
    for name in MODULES:
        if args.only and name.removeprefix("bench_") not in args.only:
            continue
        module = importlib.import_module(f"bench.{name}")
        if "quick" in inspect.signature(module.run).parameters:
            module.run(quick=args.quick)
        else:
            module.run()


if __name__ == "__main__":
    main()

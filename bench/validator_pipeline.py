"""One validator's per-record CPU, in process (no gRPC, no other node): run it from two
checkouts to compare them.

    python -m bench.validator_pipeline [--blocks 4] [--records 1500]

Blocks of signed anchors go through the steps a validator takes: half the records are
admitted as gossip before the block (``Mempool.add_gossiped``, or ``add`` one by one on
code without it), the block is validated (``LedgerApp.validate_block``: the other half is
verified there), decided, committed (durable LMDB), and the late half's gossip copies
arrive after it. Prints process CPU microseconds per record for each step.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from typing import Any

from ledger.blocks import Block, build_block
from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.limits import Limits
from ledger.policy import PolicyBook
from ledger.storage import Storage, StorageConfig
from node.app import BlockPolicy, LedgerApp
from node.mempool import DuplicateRecord, Mempool, MempoolConfig
from tests.ledger.policy_helpers import GENESIS, NET, RULES, anchor


def _gossip(mempool: Any, raws: list[bytes]) -> None:
    if hasattr(mempool, "add_gossiped"):
        mempool.add_gossiped(raws)
        return
    for raw in raws:  # older code: one record at a time
        with contextlib.suppress(DuplicateRecord):
            mempool.add(raw)


def validator(path: str, config: StorageConfig
              ) -> tuple[Storage, Ledger, Mempool, LedgerApp, list[int]]:
    """One validator in process over a fresh store at ``path``: its storage, ledger,
    mempool, app, and the app's clock (ms, a list to move it by)."""
    storage = Storage(path, config)
    ledger = Ledger(storage, genesis_hash(GENESIS.to_bytes()))
    lookups = [ledger.indices_of] if hasattr(ledger, "indices_of") else []
    mempool = Mempool(NET, RULES.keyring, Limits(), MempoolConfig(), ledger.index_of,
                      *lookups)
    clock = [10_000]
    app = LedgerApp(ledger, mempool, NET, b"\0" * 32, BlockPolicy(idle_block_interval_ms=0),
                    Limits(), PolicyBook(ledger, RULES), clock_ms=lambda: clock[0])
    return storage, ledger, mempool, app, clock


def next_block(app: LedgerApp, raws: list[bytes], time_ms: int) -> Block:
    """The block of ``raws`` on ``app``'s tip, as a proposer would build it."""
    tip = app._tip
    return build_block(NET, tip.header, tip.hash, raws, tip.frontier.copy(), time_ms,
                       b"\0" * 32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--records", type=int, default=1500)
    args = parser.parse_args(argv)
    n, half = args.records, args.records // 2
    steps = dict.fromkeys(("gossip_before_block", "validate", "decided", "commit",
                           "gossip_after_block"), 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        storage, _, mempool, app, clock = validator(tmp, StorageConfig(map_size=1 << 30))
        authors = ("tax", "social", "health")
        blocks = [[anchor(authors[i % 3]).raw for i in range(n)] for _ in range(args.blocks)]
        cpu = time.process_time
        for raws in blocks:
            t = cpu()
            _gossip(mempool, raws[:half])
            steps["gossip_before_block"] += (cpu() - t) / half
            block = next_block(app, raws, clock[0])
            data, height = block.to_bytes(), block.header.height
            t = cpu()
            if not app.validate_block(height, data):
                raise SystemExit("block refused")
            steps["validate"] += (cpu() - t) / n
            t = cpu()
            app.decided(height, block.hash, data)
            steps["decided"] += (cpu() - t) / n
            t = cpu()
            app.commit_staged(height, b"cert")
            steps["commit"] += (cpu() - t) / n
            t = cpu()
            _gossip(mempool, raws[half:])
            steps["gossip_after_block"] += (cpu() - t) / (n - half)
            clock[0] += 1
        storage.close()
    for name, total in steps.items():
        print(f"{name:20s} {1e6 * total / args.blocks:8.1f} us/record")


if __name__ == "__main__":
    main()

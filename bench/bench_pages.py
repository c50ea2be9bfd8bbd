"""LMDB pages a validator maps per block, as its ledger grows (Linux only).

    python -m bench --only pages

A node reads LMDB through a read-only map, so every page it reads stays in its resident
set until ``Storage.trim_resident`` drops it. On Linux a page fault on a file mapping also
maps up to 15 neighbouring pages already in the page cache ("fault-around"; LMDB's
MADV_RANDOM does not turn it off), so random reads map far more pages than they read.

Blocks of signed anchors go through one validator's steps (as in
``bench/validator_pipeline.py``): gossip admission, the block's id lookups alone,
validation, commit. Before each step the map is trimmed; after it, the data file's
resident pages are counted (/proc/self/smaps). Rows every few blocks: pages mapped per
step against the id index's leaf pages (after the block), as the ledger grows
(``ledger_records``: its size when the block arrived).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.validator_pipeline import next_block, validator
from ledger.records import Envelope
from ledger.storage import StorageConfig
from tests.ledger.policy_helpers import anchor

SMAPS = Path("/proc/self/smaps")


def mapped_pages(path: Path) -> int:
    """4 KiB pages of ``path`` resident in this process's mappings."""
    target, total, current = str(path.resolve()), 0, ""
    for line in SMAPS.read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            current = fields[-1]
        elif fields and fields[0] == "Rss:" and current == target:
            total += int(fields[1])
    return total // 4


def run(quick: bool = False) -> None:
    if not SMAPS.exists():
        print(json.dumps({"bench": "pages", "skipped": "needs Linux /proc/self/smaps"}))
        return
    per_block, blocks = (200, 6) if quick else (1000, 60)
    every = max(1, blocks // 6)
    authors = ("tax", "social", "health")
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        storage, ledger, mempool, app, clock = validator(
            tmp, StorageConfig(map_size=4 << 30, trim_every=0))
        data = Path(tmp) / "data.mdb"

        def step(fn: Callable[..., Any], *args: Any) -> tuple[int, Any]:
            storage.trim_resident()
            result = fn(*args)
            return mapped_pages(data), result

        for b in range(blocks):
            raws = [anchor(authors[i % 3]).raw for i in range(per_block)]
            ids = [Envelope.from_bytes(r).record_id for r in raws]
            before = ledger.tree.size
            lookups, _ = step(ledger.indices_of, ids)
            gossip, _ = step(mempool.add_gossiped, raws)
            block = next_block(app, raws, clock[0])
            raw_block, height = block.to_bytes(), block.header.height
            validate, valid = step(app.validate_block, height, raw_block)
            if not valid:
                raise SystemExit("block refused")
            app.decided(height, block.hash, raw_block)
            commit, _ = step(app.commit_staged, height, b"cert")
            clock[0] += 1
            if b % every == 0 or b == blocks - 1:
                with storage.read() as txn:
                    leaves = txn.stat(db=ledger._db[b"record_ids"])["leaf_pages"]
                print(json.dumps({
                    "bench": "pages.per_block", "records_per_block": per_block,
                    "ledger_records": before, "id_index_leaf_pages": leaves,
                    "mapped_pages": {"id_lookups": lookups, "gossip_admission": gossip,
                                     "validate": validate, "commit": commit},
                }), flush=True)
        storage.close()


if __name__ == "__main__":
    run()

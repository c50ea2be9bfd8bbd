"""Privacy benchmark: what the subject index costs at commit, and what it saves.

Prints one JSON object per line:
- commit of sharing-event blocks (1,000 records each) with the subject index written in
  the same transaction vs with the index turned off, interleaved block by block in one
  run so machine noise hits both alike: ``index_overhead`` is the time ratio;
- one subject's events by index lookup vs by a scan of every record (parse + match), on
  the same store: ``lookup_speedup``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ledger.blocks import build_block
from ledger.keys import SigningKey
from ledger.ledger_store import Ledger
from ledger.merkle import Frontier
from ledger.privacy import commitment, pseudonym
from ledger.records import sign_record
from ledger.storage import Storage
from ledger.subjects import event_subject
from proto import ledger_pb2

NET = "bench.example/privacy"
KEY = SigningKey.generate("tax-agency", os.urandom)
PSEUDONYM_KEY = os.urandom(32)
BLOCK = 1000


def _events(start: int, n: int, subjects: int) -> list[bytes]:
    out = []
    for i in range(start, start + n):
        body = ledger_pb2.RecordBody(
            network=NET, agency="tax-agency", nonce=i.to_bytes(16, "big"), created_ms=i,
            sharing_event=ledger_pb2.SharingEvent(
                provider="tax-agency", recipient="social-security", dataset="income",
                purpose="benefit", agreement_id=bytes(32),
                subject_pseudonym=pseudonym(PSEUDONYM_KEY, f"NIN-{i % subjects}"),
                payload_commitment=commitment(bytes(16), b"%d" % i), payload_size=8))
        out.append(sign_record(body, KEY).raw)
    return out


class _Chain:
    def __init__(self, path: Path, indexed: bool) -> None:
        self.storage = Storage(path)
        self.ledger = Ledger(self.storage, bytes(32))
        if not indexed:
            self.ledger.subjects.add = lambda txn, first, envs: None  # type: ignore[method-assign]
        self.frontier, self.parent = Frontier(), None

    def commit(self, envelopes: list[bytes]) -> float:
        block = build_block(NET, self.parent, bytes(32), envelopes, self.frontier, 0, bytes(32))
        start = time.perf_counter()
        self.ledger.commit_block(block)
        elapsed = time.perf_counter() - start
        self.parent = block.header
        return elapsed


def _emit(**row: Any) -> None:
    print(json.dumps({"bench": "privacy", **row}), flush=True)


def run(quick: bool = False) -> None:
    blocks = 5 if quick else 100
    subjects = 1000
    work = Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    try:
        with_index, without = _Chain(work / "a", True), _Chain(work / "b", False)
        t_with, t_without = [], []
        for b in range(blocks):
            envs = _events(b * BLOCK, BLOCK, subjects)
            t_with.append(with_index.commit(envs))
            t_without.append(without.commit(envs))
        records = blocks * BLOCK
        _emit(case="commit", records=records,
              with_index_records_per_s=round(records / sum(t_with)),
              without_index_records_per_s=round(records / sum(t_without)),
              index_overhead=round(statistics.median(t_with) / statistics.median(t_without),
                                   3))
        ledger = with_index.ledger
        wanted = pseudonym(PSEUDONYM_KEY, "NIN-7")
        start = time.perf_counter()
        found, _ = ledger.subjects.lookup(wanted, 0, 100_000)
        t_lookup = time.perf_counter() - start
        start = time.perf_counter()
        scanned = [i for i in range(ledger.tree.size) if event_subject(ledger.record(i)) == wanted]
        t_scan = time.perf_counter() - start
        assert scanned == found
        _emit(case="subject_lookup", ledger_records=records, matches=len(found),
              index_ms=round(t_lookup * 1000, 3), scan_ms=round(t_scan * 1000, 1),
              lookup_speedup=round(t_scan / t_lookup))
        for chain in (with_index, without):
            chain.storage.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    run(quick=parser.parse_args().quick)

"""Real ledgers built in-process for export and audit tests (as `shadowledger demo` does).

Besides data-sharing events, the ledger holds agreements and revocations whose state at
the tip is known: agreement 0 is active, agreement 1 expired, agreement 2 revoked by its
provider, agreement 3 starts in the future, and a revocation of agreement 0 by an agency
that is no party to it is an anomaly (ignored).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.records import Envelope, sign_record
from ledger.storage import Storage, StorageConfig
from node.demo import NETWORK, DemoNetwork, commit_blocks, make_event, make_network
from proto import ledger_pb2

FUTURE_MS = 4_102_444_800_000  # 2100-01-01
AGREEMENTS = {  # record index -> (provider, recipient, valid_from_ms, valid_until_ms)
    5: ("tax-agency", "social-security", 0, FUTURE_MS),
    6: ("health-insurance", "statistics-office", 0, 1),
    7: ("social-security", "tax-agency", 0, FUTURE_MS),
    8: ("statistics-office", "health-insurance", FUTURE_MS, FUTURE_MS + 1),
}
REVOCATIONS = {40: (7, "social-security"), 41: (5, "statistics-office")}


def _body(agency: str, **kind: object) -> ledger_pb2.RecordBody:
    return ledger_pb2.RecordBody(network=NETWORK, agency=agency, nonce=os.urandom(16),
                                 created_ms=int(time.time() * 1000), **kind)


def mixed_records() -> Callable[[DemoNetwork, int], Envelope]:
    """Record maker: sharing events, plus the agreements and revocations above."""
    ids: dict[int, bytes] = {}

    def make(net: DemoNetwork, i: int) -> Envelope:
        if i in AGREEMENTS:
            provider, recipient, start, until = AGREEMENTS[i]
            body = _body(provider, agreement=ledger_pb2.SharingAgreement(
                provider=provider, recipient=recipient, datasets=["income-records"],
                purpose="benefit-eligibility", legal_basis="test act s.1",
                valid_from_ms=start, valid_until_ms=until))
            env = sign_record(body, net.record_keys[provider])
            ids[i] = env.record_id
            return env
        if i in REVOCATIONS:
            target, agency = REVOCATIONS[i]
            body = _body(agency, revocation=ledger_pb2.AgreementRevocation(
                agreement_id=ids[target], reason="test"))
            return sign_record(body, net.record_keys[agency])
        return make_event(net, i, cite_agreement=False)[0]

    return make


def build_ledger(folder: Path, records: int, block_size: int) -> DemoNetwork:
    """A network in ``folder`` and its LMDB store in ``folder / 'node'``."""
    net = make_network(folder)
    extend_ledger(net, folder, records, block_size)
    return net


def extend_ledger(net: DemoNetwork, folder: Path, records: int, block_size: int) -> None:
    with Storage(folder / "node", StorageConfig(sync=False)) as storage:
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        commit_blocks(net, ledger, records, block_size, make=mixed_records(), verify=False,
                      with_agreements=False)


def open_readonly(folder: Path) -> tuple[Storage, Ledger]:
    storage = Storage(folder / "node", StorageConfig(readonly=True))
    return storage, Ledger(storage, bytes(32))

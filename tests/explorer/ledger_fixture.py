"""A small real ledger for explorer tests: signed records of every kind the pages show,
committed in blocks on three different days, with quorum-signed checkpoints."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ledger.blocks import BlockHeader, build_block
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.merkle import Frontier
from ledger.records import Envelope, sign_record
from node.demo import NETWORK, DemoNetwork, make_network
from proto import ledger_pb2

DAY_MS = 86_400_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % DAY_MS + 9 * 3_600_000  # 09:00 UTC on a day
BLOCK_TIMES = (T0, T0 + 700, T0 + DAY_MS, T0 + DAY_MS + 1500, T0 + 2 * DAY_MS)


@dataclass
class Built:
    """What the fixture committed, so tests compare pages with the truth."""

    folder: Path
    net: DemoNetwork
    genesis_bytes: bytes
    envelopes: list[Envelope] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    """Block height of each envelope, by index."""
    block_times: list[int] = field(default_factory=list)
    agreement_id: bytes = b""
    revoked_id: bytes = b""
    parent: BlockHeader | None = None
    frontier: Frontier = field(default_factory=Frontier)


def body(agency: str, **kind: object) -> ledger_pb2.RecordBody:
    return ledger_pb2.RecordBody(network=NETWORK, agency=agency, nonce=os.urandom(16),
                                 created_ms=T0, **kind)  # type: ignore[arg-type]


def sharing(net: DemoNetwork, provider: str, recipient: str) -> Envelope:
    event = ledger_pb2.SharingEvent(
        provider=provider, recipient=recipient, dataset="income-records",
        purpose="benefit-eligibility", subject_pseudonym=os.urandom(32),
        payload_commitment=os.urandom(32), payload_size=321,
    )
    return sign_record(body(provider, sharing_event=event), net.record_keys[provider])


def anchor(net: DemoNetwork, agency: str) -> Envelope:
    a = ledger_pb2.Anchor(source="registry/persons", key_pseudonym=os.urandom(32), version="7",
                          commitment=os.urandom(32))
    return sign_record(body(agency, anchor=a), net.record_keys[agency])


def agreement(net: DemoNetwork, provider: str, recipient: str, until_ms: int) -> Envelope:
    a = ledger_pb2.SharingAgreement(
        provider=provider, recipient=recipient, datasets=["income-records", "addresses"],
        purpose="benefit-eligibility", legal_basis="Social Code s.67", valid_from_ms=T0,
        valid_until_ms=until_ms,
    )
    return sign_record(body(provider, agreement=a), net.record_keys[provider])


def revocation(net: DemoNetwork, agency: str, target: bytes) -> Envelope:
    r = ledger_pb2.AgreementRevocation(agreement_id=target, reason="purpose fulfilled")
    return sign_record(body(agency, revocation=r), net.record_keys[agency])


def commit(built: Built, ledger: Ledger, envelopes: list[Envelope], time_ms: int) -> None:
    block = build_block(NETWORK, built.parent, ledger.genesis_hash, [e.raw for e in envelopes],
                        built.frontier, time_ms, built.net.validator_keys[1].verifier.key_hash)
    cp = Checkpoint(NETWORK, block.header.tree_size, block.header.tree_root)
    ledger.commit_block(block, checkpoint_note=sign_checkpoint(cp, built.net.validator_keys[:3]))
    built.parent = block.header
    built.envelopes += envelopes
    built.heights += [block.header.height] * len(envelopes)
    built.block_times.append(time_ms)


def build(folder: Path, ledger_factory: type[Ledger] = Ledger) -> tuple[Built, Ledger]:
    """Five blocks on three days; the caller closes ``ledger.storage``."""
    from ledger.storage import Storage

    net = make_network(folder)
    built = Built(folder, net, net.genesis_bytes)
    ledger = ledger_factory(Storage(folder / "node"), genesis_hash(net.genesis_bytes))
    tax, soc, health, stats = ("tax-agency", "social-security", "health-insurance",
                               "statistics-office")
    keep = agreement(net, tax, soc, until_ms=T0 + 365 * DAY_MS)
    gone = agreement(net, health, stats, until_ms=T0 + 30 * DAY_MS)
    built.agreement_id, built.revoked_id = keep.record_id, gone.record_id
    plan = [
        [keep, gone, *(sharing(net, tax, soc) for _ in range(3)), anchor(net, stats)],
        [sharing(net, tax, soc), sharing(net, soc, health)],
        [*(sharing(net, soc, health) for _ in range(4)), anchor(net, stats), anchor(net, tax)],
        [revocation(net, health, gone.record_id)],
        [sharing(net, health, tax) for _ in range(5)],
    ]
    for envelopes, time_ms in zip(plan, BLOCK_TIMES, strict=True):
        commit(built, ledger, envelopes, time_ms)
    return built, ledger

"""`shadowledger demo`: a single-process walk through the ledger core, doing real work.

It generates a 4-agency network (keys, genesis), has every pair of agencies sign a
sharing agreement (drafted by the provider, countersigned by the recipient), signs
data-sharing events under those agreements as the agencies would, verifies every record
and checks the sharing policy as a validator would, commits them in blocks to LMDB with
quorum-signed checkpoints and the policy state, then writes a receipt and a consistency
proof and verifies both with the same code the `shadowledger audit` commands run.

``seed_local_network`` gives a running local network (`make run`) the same kind of data
through the Python client: agreements first, then events that commit under them.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ledger.agreements import agreement_body, countersign
from ledger.blocks import build_block
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.genesis import Agency, Genesis, TrustRoot, Validator, genesis_hash
from ledger.keys import SigningKey
from ledger.ledger_store import Ledger
from ledger.merkle import Frontier
from ledger.policy import PolicyBook, PolicyChanges, PolicyRules, block_facts, check_records
from ledger.privacy import commitment, pseudonym
from ledger.receipts import ConsistencyProof, verify_checkpoint_consistency, verify_receipt
from ledger.records import Envelope, sign_record, verify_envelope
from ledger.storage import Storage
from proto import ledger_pb2

NETWORK = "demo.shadow-ledger.example/v1"
AGENCIES = ("tax-agency", "social-security", "health-insurance", "statistics-office")
PURPOSES = ("benefit-eligibility", "fraud-prevention", "official-statistics")
DATASET = "income-records"
YEAR_MS = 365 * 24 * 3600 * 1000


def demo_purpose(provider: str, recipient: str) -> str:
    """The one purpose the demo agreement between these two agencies covers."""
    return PURPOSES[(AGENCIES.index(provider) + AGENCIES.index(recipient)) % len(PURPOSES)]


def demo_pair(i: int) -> tuple[str, str]:
    """(provider, recipient) of demo event ``i``: every ordered pair of agencies in turn."""
    provider = AGENCIES[i % 4]
    return provider, AGENCIES[(i + 1 + (i // 4) % 3) % 4]  # offset 1..3: never the provider


@dataclass(frozen=True)
class DemoNetwork:
    genesis: Genesis
    genesis_bytes: bytes
    record_keys: dict[str, SigningKey]
    validator_keys: list[SigningKey]
    pseudonym_keys: dict[str, bytes]


def make_network(folder: Path) -> DemoNetwork:
    """Keys for 4 agencies (records + validators) and the genesis that pins them."""
    keys_dir = folder / "keys"
    keys_dir.mkdir(parents=True)
    record_keys = {a: SigningKey.generate(a, os.urandom) for a in AGENCIES}
    validator_keys = [SigningKey.generate(f"validator.{a}", os.urandom) for a in AGENCIES]
    for key in [*record_keys.values(), *validator_keys]:
        path = keys_dir / f"{key.name}.skey"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.to_skey() + "\n")
    genesis = Genesis(
        network=NETWORK,
        validators=tuple(Validator(k.verifier) for k in validator_keys),
        agencies=tuple(Agency(a, (record_keys[a].verifier,)) for a in AGENCIES),
        time_ms=int(time.time() * 1000),
    )
    data = genesis.to_bytes()
    (folder / "genesis.json").write_bytes(data)
    (folder / "validators.vkeys").write_text(
        "".join(k.verifier.to_vkey() + "\n" for k in validator_keys)
    )
    return DemoNetwork(
        genesis, data, record_keys, validator_keys, {a: os.urandom(32) for a in AGENCIES}
    )


def make_agreements(net: DemoNetwork, now_ms: int) -> dict[tuple[str, str], Envelope]:
    """One agreement per ordered pair of agencies, valid for a year from ``now_ms``."""
    out = {}
    for provider in AGENCIES:
        for recipient in AGENCIES:
            if provider == recipient:
                continue
            body = agreement_body(
                network=NETWORK, author=provider, provider=provider, recipient=recipient,
                datasets=[DATASET], purpose=demo_purpose(provider, recipient),
                legal_basis="Data Sharing (Demo) Act s.1", valid_from_ms=now_ms - 60_000,
                valid_until_ms=now_ms + YEAR_MS,
                countersigner=net.record_keys[recipient].verifier, nonce=os.urandom(16),
                created_ms=now_ms,
            )
            consent = countersign(body, net.record_keys[recipient])
            out[provider, recipient] = sign_record(consent, net.record_keys[provider])
    return out


def make_record(net: DemoNetwork, i: int, agreements: dict[tuple[str, str], Envelope]
                ) -> Envelope:
    """One data-sharing event under its pair's agreement: subject pseudonymised, payload
    committed, never stored."""
    provider, recipient = demo_pair(i)
    payload = f"synthetic payload {i} for citizen {1000 + i % 97}".encode()
    body = ledger_pb2.RecordBody(
        network=NETWORK,
        agency=provider,
        nonce=os.urandom(16),
        created_ms=int(time.time() * 1000),
        sharing_event=ledger_pb2.SharingEvent(
            provider=provider,
            recipient=recipient,
            dataset=DATASET,
            purpose=demo_purpose(provider, recipient),
            agreement_id=agreements[provider, recipient].record_id,
            subject_pseudonym=pseudonym(net.pseudonym_keys[provider], f"NIN-{1000 + i % 97}"),
            payload_commitment=commitment(os.urandom(16), payload),
            payload_size=len(payload),
        ),
    )
    return sign_record(body, net.record_keys[provider])


def commit_blocks(net: DemoNetwork, ledger: Ledger, records: int, block_size: int) -> list[int]:
    """Verify, policy-check and commit the agreements, then ``records`` events, in blocks;
    return the tree size of every checkpoint."""
    keyring = net.genesis.keyring()
    book = PolicyBook(ledger, PolicyRules.from_genesis(net.genesis))
    frontier, parent, sizes = Frontier(), None, []
    proposer = net.validator_keys[0].verifier.key_hash
    agreements = make_agreements(net, int(time.time() * 1000))
    batches = [list(agreements.values())] + [
        [make_record(net, i, agreements) for i in range(start, min(records, start + block_size))]
        for start in range(0, records, block_size)
    ]
    for batch in batches:
        for env in batch:  # what every validator does before voting for a block
            verify_envelope(Envelope.from_bytes(env.raw), keyring, NETWORK)
        time_ms = int(time.time() * 1000)
        view = book.view()
        check_records(view, block_facts([e.raw for e in batch], keyring), time_ms)  # policy
        block = build_block(
            NETWORK, parent, ledger.genesis_hash, [e.raw for e in batch], frontier,
            time_ms, proposer,
        )
        checkpoint = Checkpoint(NETWORK, block.header.tree_size, block.header.tree_root)
        note = sign_checkpoint(checkpoint, net.validator_keys)
        changes = PolicyChanges(block.header.height, view.changes)
        ledger.commit_block(block, checkpoint_note=note, policy=changes)
        book.absorb(changes)
        parent = block.header
        sizes.append(block.header.tree_size)
    return sizes


def run_demo(folder: Path, records: int = 2000, block_size: int = 250) -> int:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    net = make_network(folder)
    print(f"network {NETWORK}: {len(AGENCIES)} agencies, 4 validators (quorum 3)")
    print(f"  genesis  {folder / 'genesis.json'}  sha256 {genesis_hash(net.genesis_bytes).hex()}")
    with Storage(folder / "node") as storage:
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        sizes = commit_blocks(net, ledger, records, block_size)
        print(f"committed {ledger.tree.size} signed records in {ledger.head.height} blocks"
              f" to LMDB at {folder / 'node'}: {len(AGENCIES) * 3} countersigned sharing"
              f" agreements, then {records} events each covered by one")
        print(f"  root {ledger.tree.root().hex()}")
        index = ledger.tree.size // 3
        (folder / "record.bin").write_bytes(ledger.record(index))
        (folder / "receipt.tlog-proof").write_bytes(ledger.receipt(index))
        old, new = sizes[0], sizes[-1]
        (folder / "old.checkpoint").write_bytes(ledger.checkpoint(old) or b"")
        (folder / "new.checkpoint").write_bytes(ledger.checkpoint(new) or b"")
        proof = ConsistencyProof(old, new, tuple(ledger.consistency_proof(old, new)))
        (folder / "consistency.proof").write_bytes(proof.to_bytes())
    _audit(folder)
    print(f"done in {time.perf_counter() - started:.2f} s")
    return 0


def _audit(folder: Path) -> None:
    """Verify the written files exactly as an offline auditor would."""
    trust = TrustRoot.load(folder / "genesis.json")
    result = verify_receipt(
        (folder / "receipt.tlog-proof").read_bytes(), (folder / "record.bin").read_bytes(), trust
    )
    print(f"receipt verified: entry {result.index} under checkpoint size"
          f" {result.checkpoint.size}, signed by {', '.join(result.signed_by)}")
    old, new = verify_checkpoint_consistency(
        (folder / "old.checkpoint").read_bytes(), (folder / "new.checkpoint").read_bytes(),
        (folder / "consistency.proof").read_bytes(), trust,
    )
    print(f"consistency verified: size {old.size} -> {new.size}")
    print("check them yourself, offline, trusting only the genesis:")
    print(f"  .venv/bin/shadowledger audit verify-receipt {folder}/receipt.tlog-proof"
          f" --record {folder}/record.bin --trust {folder}/genesis.json")
    print(f"  .venv/bin/shadowledger audit verify-consistency {folder}/old.checkpoint"
          f" {folder}/new.checkpoint --proof {folder}/consistency.proof"
          f" --trust {folder}/genesis.json")


def seed_local_network(agencies: list[tuple[str, Path]], events: int = 5) -> list[str]:
    """Demo data for a running local network (`make run`), through the Python client:
    each agency agrees with the next one (drafted by the provider, countersigned by the
    recipient), then records ``events`` sharing events under the agreement, which commit.
    Does nothing if agreements are already on the ledger. Returns lines to print."""
    from node.client import Ack, LedgerClient
    from node.config import load_client_profile, read_pseudonym_key, read_signing_key

    profiles = {name: load_client_profile(path) for name, path in agencies}
    keys = {name: read_signing_key(p.record_key) for name, p in profiles.items()
            if p.record_key is not None}
    names = list(keys)
    with LedgerClient.from_profile(agencies[0][1]) as client:
        if client.agreements().agreements:
            return ["agreements already on the ledger: demo data not added again"]
    lines = []
    for i, provider in enumerate(names):
        recipient, purpose = names[(i + 1) % len(names)], PURPOSES[i % len(PURPOSES)]
        key_file = profiles[provider].pseudonym_key
        subject_key = read_pseudonym_key(key_file) if key_file else os.urandom(32)
        with LedgerClient.from_profile(dict(agencies)[provider]) as client:
            now = int(time.time() * 1000)
            draft = client.draft_agreement(
                keys[provider], provider=provider, recipient=recipient, datasets=[DATASET],
                purpose=purpose, legal_basis="Data Sharing (Demo) Act s.1",
                valid_from_ms=now - 60_000, valid_until_ms=now + YEAR_MS)
            consent = client.countersign_agreement(draft, keys[recipient])
            agreement_id = client.submit_agreement(consent, keys[provider]).record_id
            shared = [client.sharing_event(
                keys[provider], agreement_id=agreement_id, provider=provider,
                recipient=recipient, dataset=DATASET, purpose=purpose,
                subject_pseudonym=pseudonym(subject_key, f"NIN-{1000 + n}"),
                payload_commitment=commitment(os.urandom(16), f"payload {n}".encode()),
                payload_size=9) for n in range(events)]
            committed = sum(isinstance(r, Ack) for r in client.submit_many(shared))
        lines.append(f"agreement {agreement_id.hex()[:16]} {provider} -> {recipient}"
                     f" ({purpose}): {committed} of {events} events committed")
    return lines

"""`shadowledger demo`: a single-process walk through the ledger core, doing real work.

It generates a 4-agency network (keys, genesis), commits countersigned sharing
agreements, then data-sharing events as the agencies would write them: each names its
agreement, the subject only as a keyed pseudonym and the payload only as a salted
commitment (the subjects, payloads and salts stay with the demo, never on the ledger).
Every record is verified as a validator would, committed in blocks to LMDB with
quorum-signed checkpoints; then a receipt and a consistency proof are written and
verified with the same code the `shadowledger audit` commands run.

``seed_local_network`` gives a running local network (`make run`) the same kind of data
through the Python client: agreements first, then events that commit under them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from consensus.certificate import CommitCertificate
from consensus.crypto import Ed25519Signer, sign_vote
from consensus.messages import VoteType
from ledger.agreements import agreement_body, countersign
from ledger.blocks import Block, build_block
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


@dataclass(frozen=True)
class Plaintext:
    """What the demo keeps off the ledger for one sharing event."""

    subject: str
    payload: bytes
    salt: bytes


@dataclass(frozen=True)
class DemoNetwork:
    genesis: Genesis
    genesis_bytes: bytes
    record_keys: dict[str, SigningKey]
    validator_keys: list[SigningKey]
    pseudonym_keys: dict[str, bytes]
    agreements: dict[tuple[str, str, str], Envelope] = field(default_factory=dict)
    """The countersigned agreements events name: made once by ``make_network``."""


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
    net = DemoNetwork(
        genesis, data, record_keys, validator_keys, {a: os.urandom(32) for a in AGENCIES}
    )
    net.agreements.update(make_agreements(net))
    return net


def subject_id(i: int) -> str:
    return f"NIN-{1000 + i % 97}"


def make_agreements(net: DemoNetwork) -> dict[tuple[str, str, str], Envelope]:
    """One countersigned agreement per (provider, recipient, purpose), by the provider."""
    now = int(time.time() * 1000)
    out = {}
    for provider in AGENCIES:
        for recipient in (a for a in AGENCIES if a != provider):
            for purpose in PURPOSES:
                body = agreement_body(
                    network=NETWORK, author=provider, provider=provider, recipient=recipient,
                    datasets=["income-records"], purpose=purpose,
                    legal_basis=f"Data Sharing Act s.{PURPOSES.index(purpose) + 4}",
                    valid_from_ms=now - 86_400_000, valid_until_ms=now + 365 * 86_400_000,
                    countersigner=net.record_keys[recipient].verifier, nonce=os.urandom(16),
                    created_ms=now)
                signed = countersign(body, net.record_keys[recipient])
                out[provider, recipient, purpose] = sign_record(signed, net.record_keys[provider])
    return out


def make_event(net: DemoNetwork, i: int, cite_agreement: bool = True
               ) -> tuple[Envelope, Plaintext]:
    """One data-sharing event: subject pseudonymised, payload committed, never stored.

    ``cite_agreement=False`` leaves ``agreement_id`` empty (ledgers built without the
    demo agreements, for audits of other agreement histories)."""
    provider = AGENCIES[i % 4]
    recipient = AGENCIES[(i + 1 + (i // 4) % 3) % 4]  # offset 1..3: never the provider
    purpose = PURPOSES[i % len(PURPOSES)]
    plain = Plaintext(subject_id(i), f"synthetic payload {i} for citizen {subject_id(i)}"
                      .encode(), os.urandom(32))
    body = ledger_pb2.RecordBody(
        network=NETWORK,
        agency=provider,
        nonce=os.urandom(16),
        created_ms=int(time.time() * 1000),
        sharing_event=ledger_pb2.SharingEvent(
            provider=provider,
            recipient=recipient,
            dataset="income-records",
            purpose=purpose,
            agreement_id=(net.agreements[provider, recipient, purpose].record_id
                          if cite_agreement else b""),
            subject_pseudonym=pseudonym(net.pseudonym_keys[provider], plain.subject),
            payload_commitment=commitment(plain.salt, plain.payload),
            payload_size=len(plain.payload),
        ),
    )
    return sign_record(body, net.record_keys[provider]), plain


def make_record(net: DemoNetwork, i: int) -> Envelope:
    """The envelope of ``make_event`` (callers that keep no plaintext)."""
    return make_event(net, i)[0]


@dataclass
class DemoLedger:
    sizes: list[int]
    """Tree size of every checkpoint."""
    plaintexts: list[Plaintext]
    """What stayed off the ledger, one per event."""
    agreements: int


def commit_blocks(
    net: DemoNetwork, ledger: Ledger, records: int, block_size: int,
    make: Callable[[DemoNetwork, int], Envelope] | None = None, verify: bool = True,
    with_agreements: bool = True,
) -> DemoLedger:
    """Append ``records`` records in blocks, each with a commit certificate and a checkpoint
    signed by every validator. An empty ledger first gets the network's agreements, in a
    block of their own (unless ``with_agreements`` is false); records come from ``make``
    (default: sharing events, whose plaintexts are returned).

    ``verify`` re-checks every record and the sharing policy as a validator would, and
    stores the policy state with each block (off for fast bulk builds: no policy state)."""
    keyring = net.genesis.keyring()
    first = ledger.tree.size
    frontier = Frontier.from_source(ledger.tree, first)  # appends to what is there
    parent = ledger.block(ledger.head.height).header if ledger.head.height else None
    proposer = net.validator_keys[0].verifier.key_hash
    agreements = list(net.agreements.values()) if first == 0 and with_agreements else []
    out = DemoLedger([], [], len(agreements))
    start = first + len(agreements)

    def batches() -> Iterator[list[Envelope]]:  # made block by block: ``records`` may be huge
        if agreements:
            yield agreements
        for at in range(start, start + records, block_size):
            stop = min(start + records, at + block_size)
            if make is None:
                made = [make_event(net, i) for i in range(at, stop)]
                out.plaintexts.extend(plain for _, plain in made)
                yield [env for env, _ in made]
            else:
                yield [make(net, i) for i in range(at, stop)]

    book = PolicyBook(ledger, PolicyRules.from_genesis(net.genesis)) if verify else None
    for batch in batches():
        time_ms = int(time.time() * 1000)
        changes = None
        if book is not None:  # what every validator does before voting for a block
            for env in batch:
                verify_envelope(Envelope.from_bytes(env.raw), keyring, NETWORK)
            view = book.view()  # the policy checks agreements' consent too
            check_records(view, block_facts([e.raw for e in batch], keyring), time_ms)
            changes = PolicyChanges(ledger.head.height + 1, view.changes)
        block = build_block(
            NETWORK, parent, ledger.genesis_hash, [e.raw for e in batch], frontier,
            time_ms, proposer,
        )
        checkpoint = Checkpoint(NETWORK, block.header.tree_size, block.header.tree_root)
        note = sign_checkpoint(checkpoint, net.validator_keys)
        ledger.commit_block(block, certificate_for(net, block), checkpoint_note=note,
                            policy=changes)
        if book is not None and changes is not None:
            book.absorb(changes)
        parent = block.header
        out.sizes.append(block.header.tree_size)
    return out


def certificate_for(net: DemoNetwork, block: Block, signers: int | None = None) -> bytes:
    """A commit certificate: precommits for ``block`` by the first ``signers`` validators
    (all by default), as Tendermint's round 0 would gather them."""
    chain_id = genesis_hash(net.genesis_bytes)
    votes = [
        sign_vote(Ed25519Signer(key.seed), chain_id, block.header.height, 0,
                  VoteType.PRECOMMIT, block.hash)
        for key in net.validator_keys[:signers]
    ]
    return CommitCertificate.from_precommits(votes).to_bytes()


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
        built = commit_blocks(net, ledger, records, block_size)
        sizes = built.sizes
        print(f"committed {built.agreements} countersigned agreements and {records} sharing"
              f" events ({ledger.tree.size} records) in {ledger.head.height} blocks"
              f" to LMDB at {folder / 'node'}")
        subject = subject_id(0)
        found, _ = ledger.subjects.lookup(
            pseudonym(net.pseudonym_keys[AGENCIES[0]], subject), 0, 1000)
        print(f"  subject {subject}: {len(found)} events shared by {AGENCIES[0]}, found by"
              " its pseudonym in the subject index (the ledger holds no identifier)")
        print(f"  root {ledger.tree.root().hex()}")
        index = built.agreements + records // 3
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

"""Privacy by design, in one process: delivery frames, box keys in the genesis, the
subject index, the off-ledger store's erasure, and a demo ledger free of personal data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger.delivery import (
    DeliveryContent,
    check_against_event,
    check_sealed_size,
    sealed_size,
)
from ledger.errors import FormatError, VerificationError
from ledger.genesis import Genesis, decode_box_key, encode_box_key, genesis_hash
from ledger.ledger_store import Ledger
from ledger.privacy import pseudonym
from ledger.records import Envelope, verify_envelope
from ledger.storage import Storage
from ledger.subjects import SUBJECTS_DB
from node.delivery import generate_box_key, open_sealed, seal
from node.demo import AGENCIES, NETWORK, DemoLedger, DemoNetwork, commit_blocks, make_network
from node.offledger import AlreadyDelivered, DeliveryStore, StoreFull

EVENTS = 400


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoNetwork, Path, DemoLedger]:
    folder = tmp_path_factory.mktemp("demo")
    net = make_network(folder)
    with Storage(folder / "node") as storage:
        built = commit_blocks(net, Ledger(storage, genesis_hash(net.genesis_bytes)),
                              EVENTS, 64)
    return net, folder / "node", built


def _event(net: DemoNetwork, ledger: Ledger, index: int):  # type: ignore[no-untyped-def]
    env = Envelope.from_bytes(ledger.record(index))
    return verify_envelope(env, net.genesis.keyring(), NETWORK)


def test_a_delivery_opens_only_its_own_event(demo: tuple[DemoNetwork, Path, DemoLedger]
                                             ) -> None:
    net, path, built = demo
    with Storage(path) as storage:
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        first = built.agreements
        event, other = _event(net, ledger, first), _event(net, ledger, first + 1)
        agreement = _event(net, ledger, 0)
    plain = built.plaintexts[0]
    content = DeliveryContent(event.record_id, plain.salt, plain.payload)
    assert DeliveryContent.from_bytes(content.to_bytes()) == content
    check_against_event(content, event)
    secret, public = generate_box_key()
    sealed = seal(content, public)
    assert len(sealed) == sealed_size(len(plain.payload), len(plain.salt))
    check_sealed_size(len(sealed), len(plain.payload))
    assert open_sealed(sealed, secret) == content
    with pytest.raises(VerificationError, match="does not open with this agency's box key"):
        open_sealed(sealed, generate_box_key()[0])
    with pytest.raises(VerificationError, match="another sharing event"):
        check_against_event(content, other)
    with pytest.raises(VerificationError, match="not a sharing event"):
        check_against_event(content, agreement)
    tampered = DeliveryContent(event.record_id, plain.salt, plain.payload[:-1] + b"X")
    with pytest.raises(VerificationError, match="do not open"):
        check_against_event(tampered, event)
    with pytest.raises(VerificationError, match="committed to"):
        check_against_event(DeliveryContent(event.record_id, plain.salt, b"short"), event)
    with pytest.raises(FormatError, match="must be"):
        check_sealed_size(len(sealed) + 100, len(plain.payload))
    with pytest.raises(FormatError, match="salt"):
        DeliveryContent(event.record_id, b"tiny", b"x")
    with pytest.raises(FormatError, match="delivery/v1"):
        DeliveryContent.from_bytes(b"something else entirely" * 4)


def test_box_keys_are_optional_in_the_genesis(demo: tuple[DemoNetwork, Path, DemoLedger]
                                              ) -> None:
    net = demo[0]
    assert b"box_keys" not in net.genesis_bytes  # older genesis files keep their bytes
    assert Genesis.from_bytes(net.genesis_bytes).to_bytes() == net.genesis_bytes
    public = generate_box_key()[1]
    assert decode_box_key(encode_box_key(public)) == public
    text = net.genesis_bytes.replace(b'"name": "tax-agency",',
                                     f'"box_keys": ["{encode_box_key(public)}"],'
                                     ' "name": "tax-agency",'.encode())
    agency = Genesis.from_bytes(text).agency("tax-agency")
    assert agency is not None and agency.box_keys == (public,)
    for bad in ("not base64!", encode_box_key(b"short")):
        with pytest.raises(FormatError, match="box key"):
            Genesis.from_bytes(text.replace(encode_box_key(public).encode(), bad.encode()))


def test_subject_index_matches_a_full_scan_and_pages(
        demo: tuple[DemoNetwork, Path, DemoLedger]) -> None:
    net, path, built = demo
    with Storage(path) as storage:
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        expected: dict[bytes, list[int]] = {}
        for index in range(ledger.tree.size):
            record = _event(net, ledger, index)
            if record.kind == "sharing_event":
                expected.setdefault(record.body.sharing_event.subject_pseudonym, []).append(index)
        assert sum(map(len, expected.values())) == EVENTS
        for key, indices in expected.items():
            assert ledger.subjects.lookup(key, 0, 10_000) == (indices, False)
        subject = built.plaintexts[0].subject
        wanted = expected[pseudonym(net.pseudonym_keys[AGENCIES[0]], subject)]
        assert len(wanted) > 1
        page, more = ledger.subjects.lookup(
            pseudonym(net.pseudonym_keys[AGENCIES[0]], subject), wanted[0] + 1, 1)
        assert (page, more) == (wanted[1:2], len(wanted) > 2)
        assert ledger.subjects.lookup(os.urandom(32), 0, 10) == ([], False)


def test_a_store_without_the_index_is_indexed_when_opened(
        demo: tuple[DemoNetwork, Path, DemoLedger], tmp_path: Path) -> None:
    net, path, _ = demo
    with Storage(path) as storage:
        storage.copy_to(tmp_path / "copy")
        before = Ledger(storage, genesis_hash(net.genesis_bytes)).subjects
        key = pseudonym(net.pseudonym_keys[AGENCIES[0]], "NIN-1000")
        want = before.lookup(key, 0, 1000)
    # As written before the index existed:
    with Storage(tmp_path / "copy") as storage, storage.write() as txn:
        txn.drop(storage.db(SUBJECTS_DB), delete=False)
        txn.delete(b"subjects.size", db=storage.db(b"meta"))
    with Storage(tmp_path / "copy") as storage:
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        assert ledger.subjects.indexed_size() == ledger.tree.size
        assert ledger.subjects.lookup(key, 0, 1000) == want


def test_no_plaintext_identifier_or_payload_in_the_demo_ledger(
        demo: tuple[DemoNetwork, Path, DemoLedger]) -> None:
    net, path, built = demo
    needles = {p.subject.encode() for p in built.plaintexts}
    needles |= {p.payload for p in built.plaintexts} | {p.salt for p in built.plaintexts}
    assert len(needles) > EVENTS
    files = sorted(path.glob("*.mdb"))
    assert [f.name for f in files] == ["data.mdb", "lock.mdb"]
    for file in files:
        data = file.read_bytes()
        found = [n for n in needles if n in data]
        assert not found, (file, found[:3])
    with Storage(path) as storage:  # and every record and block, read back
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        stored = [ledger.record(i) for i in range(ledger.tree.size)]
        stored += [b.to_bytes() for b in ledger.blocks()]
    for item in stored:
        assert not any(n in item for n in needles)


def test_delivery_store_erases_without_leaving_the_ciphertext(tmp_path: Path) -> None:
    store = DeliveryStore(tmp_path / "deliveries", 1 << 20)
    event = os.urandom(32)
    sealed = os.urandom(5000)
    store.put(event, 7, "tax-agency", sealed)
    got = store.get(event)
    assert not isinstance(got, bool) and got is not None
    assert (got.event_index, got.provider, got.sealed) == (7, "tax-agency", sealed)
    with pytest.raises(AlreadyDelivered, match="is stored"):
        store.put(event, 7, "tax-agency", sealed)
    data = tmp_path / "deliveries" / "data.mdb"
    assert sealed[:64] in data.read_bytes()
    assert store.erase(event) > len(sealed)
    assert sealed[:64] not in data.read_bytes()
    assert store.get(event) is False and store.erase(event) == 0
    with pytest.raises(AlreadyDelivered, match="was erased"):
        store.put(event, 7, "tax-agency", sealed)
    assert store.get(os.urandom(32)) is None
    with pytest.raises(StoreFull, match="full"):
        for _ in range(400):
            store.put(os.urandom(32), 1, "tax-agency", os.urandom(4000))
    store.close()

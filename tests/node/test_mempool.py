"""Mempool: verify once, refuse duplicates, push back when full, free verdicts on commit."""

from __future__ import annotations

import pytest

from ledger.errors import FormatError, SignatureError
from ledger.keys import SigningKey
from ledger.limits import DEFAULT_LIMITS
from ledger.records import Keyring, sign_record
from node.mempool import DuplicateRecord, Mempool, MempoolConfig, MempoolFull
from proto import ledger_pb2

NET = "test.example/v1"
KEY = SigningKey.generate("agency-a", lambda n: b"\x07" * n)
STRANGER = SigningKey.generate("agency-a", lambda n: b"\x09" * n)


def _raw(i: int, key: SigningKey = KEY) -> bytes:
    body = ledger_pb2.RecordBody(network=NET, agency="agency-a", nonce=i.to_bytes(16, "big"),
                                 anchor=ledger_pb2.Anchor(source="s", version=str(i)))
    return sign_record(body, key).raw


def _pool(max_records: int = 3, committed: dict[bytes, int] | None = None) -> Mempool:
    known = committed or {}
    return Mempool(NET, Keyring([KEY.verifier]), DEFAULT_LIMITS,
                   MempoolConfig(max_records=max_records, max_bytes=1 << 20), known.get)


def test_full_mempool_pushes_back_and_frees_on_commit() -> None:
    pool = _pool()
    records = [pool.add(_raw(i)) for i in range(3)]
    with pytest.raises(MempoolFull, match="limit"):
        pool.add(_raw(3))
    assert len(pool) == 3 and [e.raw for e in pool.take(10, 1 << 20)] == [_raw(i) for i in range(3)]
    pool.remove([records[0].record_id], [records[0].envelope.leaf_hash])
    pool.add(_raw(3))
    assert len(pool) == 3


def test_duplicates_pending_or_committed_are_refused() -> None:
    first = _raw(1)
    pool = _pool()
    record = pool.add(first)
    with pytest.raises(DuplicateRecord, match="pending"):
        pool.add(first)
    committed = _pool(committed={record.record_id: 41})
    with pytest.raises(DuplicateRecord, match="committed") as err:
        committed.add(first)
    assert err.value.index == 41


def test_block_records_verified_once_unknown_ones_checked() -> None:
    pool = _pool()
    known = pool.add(_raw(1))
    fresh = _raw(2)
    checked = pool.verify_for_block([known.envelope.raw, fresh])
    assert checked[0] == (known.envelope.leaf_hash, known.record_id)
    with pytest.raises(SignatureError):
        pool.verify_for_block([_raw(3, STRANGER)])
    # After state sync's certificate check, signatures are not re-checked, only parsed.
    assert len(pool.verify_for_block([_raw(3, STRANGER)], check_signatures=False)) == 1


def test_gossiped_duplicates_are_recognised_before_the_signature_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import node.mempool as mempool_module

    record_committed, record_decided, record_pending = _raw(1), _raw(2), _raw(3)
    committed_id = mempool_module.Envelope.from_bytes(record_committed).record_id
    lookups: list[list[bytes]] = []

    def indices(rids: list[bytes]) -> list[int | None]:
        lookups.append(list(rids))
        return [0 if rid == committed_id else None for rid in rids]

    pool = Mempool(NET, Keyring([KEY.verifier]), DEFAULT_LIMITS,
                   MempoolConfig(max_records=10, max_bytes=1 << 20),
                   {committed_id: 0}.get, indices)
    decided = pool.add(record_decided)
    pool.remove([decided.record_id], [decided.envelope.leaf_hash], decided=True)
    assert pool.add_gossiped([record_pending]) == (1, [])
    checks: list[bytes] = []
    real = mempool_module.verify_envelope
    monkeypatch.setattr(mempool_module, "verify_envelope",
                        lambda env, *a: checks.append(env.raw) or real(env, *a))
    # Committed, in a decided block not yet written, or pending: skipped without a check,
    # the committed index read once for the batch (pending and decided ones not even that).
    lookups.clear()
    assert pool.add_gossiped([record_committed, record_decided, record_pending]) == (0, [])
    assert checks == [] and len(pool) == 1 and lookups == [[committed_id]]
    with pytest.raises(DuplicateRecord, match="decided block"):
        pool.add(record_decided)
    checks.clear()
    # New records are checked once and queued; bad ones (bad signature, not even an
    # envelope) are reported and the rest of the batch still goes in.
    queued, errors = pool.add_gossiped([_raw(4), _raw(5, STRANGER), b"\xff\x00", _raw(6)])
    assert queued == 2 and checks == [_raw(4), _raw(5, STRANGER), _raw(6)]
    assert [type(e) for e in errors] == [FormatError, SignatureError]
    assert len(pool) == 3


def test_refused_records_may_come_back() -> None:
    pool = _pool(max_records=10)
    record = pool.add(_raw(1))
    pool.remove([record.record_id])  # refused by the policy, not decided
    assert pool.add(_raw(1)).record_id == record.record_id


def test_gossip_of_a_record_verified_in_a_proposed_block_is_queued_without_a_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A proposal often arrives before the gossip of its records: they are verified for the
    block, and their gossip copies then go in unchecked (the block may not be decided)."""
    import node.mempool as mempool_module

    pool = _pool(max_records=10)
    in_block, bad = _raw(1), _raw(2, STRANGER)
    with pytest.raises(SignatureError):
        pool.verify_for_block([bad])
    [(leaf, rid)] = pool.verify_for_block([in_block])
    checks: list[bytes] = []
    real = mempool_module.verify_envelope
    monkeypatch.setattr(mempool_module, "verify_envelope",
                        lambda env, *a: checks.append(env.raw) or real(env, *a))
    queued, errors = pool.add_gossiped([in_block, bad])
    assert queued == 1 and checks == [bad] and [type(e) for e in errors] == [SignatureError]
    assert [e.record_id for e in pool.take(10, 1 << 20)] == [rid]
    assert pool.facts(leaf) is not None
    assert pool.add_gossiped([in_block]) == (0, [])  # now pending: a duplicate
    with pytest.raises(DuplicateRecord, match="pending"):
        pool.add(in_block)


def test_each_signature_check_is_counted_once() -> None:
    checks: list[int] = []
    pool = Mempool(NET, Keyring([KEY.verifier]), DEFAULT_LIMITS,
                   MempoolConfig(max_records=10, max_bytes=1 << 20), {}.get,
                   on_check=lambda: checks.append(1))
    submitted = pool.add(_raw(1))  # a client's record: checked
    pool.add_gossiped([_raw(2), _raw(1)])  # one new, one pending: one check
    pool.verify_for_block([_raw(1), _raw(2), _raw(3)])  # only the unseen one
    pool.add_gossiped([_raw(3)])  # verified for the block already: no check
    pool.verify_for_block([_raw(4)], check_signatures=False)  # parsed only
    assert len(checks) == 3 and submitted.record_id in {e.record_id for e in pool.take(9, 1 << 20)}

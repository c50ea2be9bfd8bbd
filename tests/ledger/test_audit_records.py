"""The audit's per-record checker (``ledger.audit_records``): its two-pass fast path (inline
canonical-layout check, libsodium called directly, bodies parsed as one ``EnvelopeRun``)
must find exactly what checking record by record finds: the same first failure with the
same reason, and the same summary facts for the records before it."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.audit_records import (
    AgreementSeen,
    ChunkResult,
    RecordChecker,
    RecordChunk,
    RevocationSeen,
)
from ledger.errors import VerificationError
from ledger.keys import SigningKey
from ledger.records import RECORD_CONTEXT, Envelope, decode_body, sign_record
from node.demo import AGENCIES, NETWORK, DemoNetwork, make_network, make_record
from proto import ledger_pb2

A, B, C = AGENCIES[:3]


def reference(checker: RecordChecker, chunk: RecordChunk) -> ChunkResult:
    """The checks one record at a time, as the audit made them before the fast path:
    ``Envelope.split``, pynacl's verify, ``decode_body``, network, author."""
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    result = ChunkResult(chunk.first_index)
    keys = {key_hash: (name, public) for key_hash, name, public in checker.keys}
    for offset, raw in enumerate(chunk.envelopes):
        index = chunk.first_index + offset
        try:
            body_bytes, signer, signature = Envelope.split(raw, checker.limits)
            if signer not in keys:
                raise VerificationError(f"record signer {signer[:4].hex()} is not a genesis key")
            name, public = keys[signer]
            try:
                crypto_sign_open(signature + RECORD_CONTEXT + body_bytes, public)
            except BadSignatureError as exc:
                raise VerificationError(f"record signature by {name} does not verify") from exc
            body = decode_body(body_bytes)
            if body.network != checker.network:
                raise VerificationError(f"record is for network {body.network!r},"
                                        f" not {checker.network!r}")
            if body.agency != name:
                raise VerificationError(f"record claims agency {body.agency!r}, signed by {name}")
        except VerificationError as exc:
            result.failure = (index, str(exc))
            break
        kind = body.WhichOneof("kind") or ""
        rid = Envelope.from_bytes(raw).record_id
        result.counts[(name, kind)] += 1
        result.record_ids.append(rid)
        if kind == "sharing_event":
            if body.sharing_event.provider != name:
                result.anomalies.append((index, f"sharing event by {name} names provider"
                                                f" {body.sharing_event.provider!r}"))
            if body.sharing_event.agreement_id:
                result.event_agreements.append((index, body.sharing_event.agreement_id))
        elif kind == "agreement":
            a = body.agreement
            result.agreements.append(AgreementSeen(
                index, rid, name, a.provider, a.recipient, a.purpose, tuple(a.datasets),
                a.valid_from_ms, a.valid_until_ms))
        elif kind == "revocation":
            result.revocations.append(
                RevocationSeen(index, body.revocation.agreement_id, name))
        result.checked += 1
    return result


def _facts(result: ChunkResult) -> tuple[object, ...]:
    return (result.failure, result.checked, result.counts, result.record_ids,
            result.agreements, result.revocations, result.event_agreements, result.anomalies)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> DemoNetwork:
    return make_network(tmp_path_factory.mktemp("net"))


@pytest.fixture(scope="module")
def checker(net: DemoNetwork) -> RecordChecker:
    return RecordChecker.from_genesis(net.genesis)


@pytest.fixture(scope="module")
def good(net: DemoNetwork) -> list[bytes]:
    return [make_record(net, i).raw for i in range(24)]


def _signed(net: DemoNetwork, key: SigningKey | None = None, **fields: object) -> bytes:
    """A correctly signed envelope of a body with ``fields`` (by A's key)."""
    body = ledger_pb2.RecordBody(network=NETWORK, agency=A, nonce=os.urandom(16),
                                 created_ms=1)
    for name, value in fields.items():
        if isinstance(value, ledger_pb2.SharingEvent | ledger_pb2.Anchor):
            getattr(body, name).CopyFrom(value)
        else:
            setattr(body, name, value)
    return sign_record(body, key or net.record_keys[A]).raw


def _signed_bytes(net: DemoNetwork, body: bytes) -> bytes:
    """An envelope signed by A over arbitrary ``body`` bytes."""
    key = net.record_keys[A]
    return ledger_pb2.Envelope(body=body, signer=key.verifier.key_hash,
                               signature=key.sign(RECORD_CONTEXT + body)).SerializeToString()


def _bad_cases(net: DemoNetwork, env: bytes) -> dict[str, bytes]:
    body = Envelope.split(env)[0]
    long_head = bytes([0x0A, len(body) & 0x7F | 0x80, len(body) >> 7 | 0x80, 0x00])
    event = ledger_pb2.SharingEvent(provider=A, recipient=B)
    stranger = SigningKey.generate(A, os.urandom)
    return {
        "bad signature": env[:-1] + bytes([env[-1] ^ 1]),
        "signature over another body": env[:-101] + bytes([env[-101] ^ 1]) + env[-100:],
        "trailing byte": env + b"\x00",
        "missing byte": env[:-1],
        "non-minimal body length": long_head + env[3:],
        "signer field first": env[-100:-66] + env[:-100] + env[-66:],
        "unknown field": env + b"\x20\x01",
        "empty": b"",
        "unknown signer": _signed(net, stranger, sharing_event=event),
        "other network": _signed(net, network="other-net", sharing_event=event),
        "wrong author": _signed(net, agency=B, sharing_event=event),
        "no kind": _signed(net),
        "short nonce": _signed(net, nonce=b"x" * 8, sharing_event=event),
        "body not protobuf": _signed_bytes(net, b"\xff\xff\xff"),
        "body invalid utf-8": _signed_bytes(net, b"\x0a\x02\xff\xfe"),
        "anchor rows without source": _signed(net, anchor=ledger_pb2.Anchor(
            rows=[ledger_pb2.AnchoredRow(key_pseudonym=b"k" * 32, commitment=b"c" * 32)])),
        "provider differs (anomaly, not failure)": _signed(
            net, sharing_event=ledger_pb2.SharingEvent(provider=C)),
        "valid anchor": _signed(net, anchor=ledger_pb2.Anchor(
            source="register/persons",
            rows=[ledger_pb2.AnchoredRow(key_pseudonym=b"k" * 32, commitment=b"c" * 32)])),
    }


def test_every_bad_record_is_caught_at_its_index_with_the_reference_reason(
        net: DemoNetwork, checker: RecordChecker, good: list[bytes]) -> None:
    cases = _bad_cases(net, good[0])
    for name, bad in cases.items():
        for at in (0, 5, len(good) - 1):
            envelopes = (*good[:at], bad, *good[at:])
            chunk = RecordChunk(1000, envelopes)
            fast, slow = checker(chunk), reference(checker, chunk)
            assert _facts(fast) == _facts(slow), (name, at)
            if name in ("provider differs (anomaly, not failure)", "valid anchor"):
                assert fast.failure is None and fast.checked == len(envelopes), name
            else:
                assert fast.failure is not None and fast.failure[0] == 1000 + at, name
                assert fast.checked == at


def test_every_framing_byte_is_checked(checker: RecordChecker, good: list[bytes]) -> None:
    """The bytes the fast path checks instead of parsing: the body tag and length, the
    signer and signature tags and lengths. Any other value there is refused, as the
    reference refuses it (a changed tag outside the signed body keeps the signature good)."""
    env = good[2]
    size = len(env)
    for at in (0, 1, 2, size - 100, size - 99, size - 66, size - 65):
        for xor in (0x01, 0x02, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF):
            bad = env[:at] + bytes([env[at] ^ xor]) + env[at + 1 :]
            chunk = RecordChunk(0, (good[0], bad))
            fast = checker(chunk)
            assert fast.failure is not None and fast.failure[0] == 1, (at, xor)
            assert _facts(fast) == _facts(reference(checker, chunk)), (at, xor)


def test_an_earlier_body_failure_wins_over_a_later_signature_failure(
        net: DemoNetwork, checker: RecordChecker, good: list[bytes]) -> None:
    """Pass 1 stops at the bad signature of record 7; pass 2 must still report the
    network of record 3 first, as the record-by-record order does."""
    cases = _bad_cases(net, good[0])
    envelopes = (*good[:3], cases["other network"], *good[3:6], cases["bad signature"],
                 *good[6:])
    result = checker(RecordChunk(0, envelopes))
    assert result.failure == (3, "record is for network 'other-net', not"
                                 f" {NETWORK!r}")
    assert result.checked == 3 and len(result.record_ids) == 3
    assert _facts(result) == _facts(reference(checker, RecordChunk(0, envelopes)))


def test_a_bad_signature_before_a_bad_envelope_is_reported_first(
        net: DemoNetwork, checker: RecordChecker, good: list[bytes]) -> None:
    """Pass 1 checks framing and signers over the chunk, then the signatures: a bad
    signature at 4 must still win over a bad envelope or unknown signer at 9."""
    cases = _bad_cases(net, good[0])
    for later in ("trailing byte", "unknown signer", "non-minimal body length"):
        envelopes = (*good[:4], cases["bad signature"], *good[4:8], cases[later], *good[8:])
        chunk = RecordChunk(0, envelopes)
        result = checker(chunk)
        assert result.failure is not None and result.failure[0] == 4, later
        assert result.failure[1].startswith("record signature by") and result.checked == 4
        assert _facts(result) == _facts(reference(checker, chunk))


def test_a_good_chunk_gives_the_summary_facts(
        net: DemoNetwork, checker: RecordChecker, good: list[bytes]) -> None:
    chunk = RecordChunk(256, tuple(good))
    result = checker(chunk)
    assert result.failure is None and result.checked == len(good)
    assert sum(result.counts.values()) == len(good)
    assert set(result.counts) == {(a, "sharing_event") for a in net.record_keys}
    assert result.record_ids == [Envelope.from_bytes(e).record_id for e in good]
    assert [i for i, _ in result.event_agreements] == list(range(256, 256 + len(good)))
    assert _facts(result) == _facts(reference(checker, chunk))
    assert Counter(result.counts) == reference(checker, chunk).counts


def test_unreadable_chunk_is_reported_without_checks(checker: RecordChecker) -> None:
    result = checker(RecordChunk(512, (), "tile/entries/x002 is missing"))
    assert result.unreadable == "tile/entries/x002 is missing" and result.checked == 0


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_envelopes_fail_as_the_reference_says(
        data: st.DataObject, checker: RecordChecker, good: list[bytes]) -> None:
    """Any byte flipped, inserted or removed: same verdict and reason as the reference."""
    env = bytearray(good[data.draw(st.integers(0, len(good) - 1))])
    at = data.draw(st.integers(0, len(env) - 1))
    op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
    if op == "flip":
        env[at] ^= data.draw(st.integers(1, 255))
    elif op == "insert":
        env.insert(at, data.draw(st.integers(0, 255)))
    else:
        del env[at]
    chunk = RecordChunk(0, (good[0], bytes(env), good[1]))
    fast = checker(chunk)
    assert _facts(fast) == _facts(reference(checker, chunk))
    assert fast.failure is not None and fast.failure[0] == 1  # any change breaks record 1

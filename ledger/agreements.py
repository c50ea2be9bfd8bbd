"""Data-sharing agreements: two agencies' signed consent, and what an agreement covers.

An agreement is a ``SharingAgreement`` record authored (envelope-signed) by one party and
countersigned by the other. The countersignature is an Ed25519 signature, by a record key
of the other party, over ``AGREEMENT_CONSENT_CONTEXT || body`` where ``body`` is the
deterministic serialization of the record body with ``countersignature`` left empty (and
``countersigner`` already set). The author then sets ``countersignature`` and signs the
final body as any record. The consent context differs from the record context, so a
countersignature can never pass for a record signature or the other way round.

This module holds the stateless rules only (who may sign, well-formed fields). Whether an
agreement is active at a given time, and whether it was revoked, is state derived from the
chain (the policy state).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.errors import FormatError, SignatureError
from ledger.keys import SigningKey, VerifierKey
from ledger.records import Keyring, Record
from proto import ledger_pb2

AGREEMENT_CONSENT_CONTEXT = b"shadowledger/agreement-consent/v1\n"
MAX_DATASETS = 64
MAX_NAME = 128


@dataclass(frozen=True)
class Agreement:
    """The decoded terms of a committed agreement (record id = agreement id)."""

    agreement_id: bytes
    provider: str
    recipient: str
    datasets: frozenset[str]
    purpose: str
    legal_basis: str
    valid_from_ms: int
    valid_until_ms: int

    @classmethod
    def from_record(cls, record: Record) -> Agreement:
        return cls.from_body(record.record_id, record.body)

    @classmethod
    def from_body(cls, agreement_id: bytes, body: ledger_pb2.RecordBody) -> Agreement:
        a = body.agreement
        return cls(agreement_id, a.provider, a.recipient, frozenset(a.datasets), a.purpose,
                   a.legal_basis, a.valid_from_ms, a.valid_until_ms)

    def in_force(self, time_ms: int) -> bool:
        """Whether ``time_ms`` lies in [valid_from, valid_until): expiry needs no record."""
        return self.valid_from_ms <= time_ms < self.valid_until_ms

    def covers(self, provider: str, recipient: str, dataset: str, purpose: str,
               time_ms: int) -> bool:
        return (self.provider == provider and self.recipient == recipient
                and dataset in self.datasets and self.purpose == purpose
                and self.in_force(time_ms))

    def describe(self) -> str:
        return (f"{self.provider} -> {self.recipient}, datasets {sorted(self.datasets)}, "
                f"purpose {self.purpose!r}, basis {self.legal_basis!r}, "
                f"valid [{self.valid_from_ms}, {self.valid_until_ms}) ms")


def agreement_body(
    *,
    network: str,
    author: str,
    provider: str,
    recipient: str,
    datasets: Iterable[str],
    purpose: str,
    legal_basis: str,
    valid_from_ms: int,
    valid_until_ms: int,
    countersigner: VerifierKey,
    nonce: bytes,
    created_ms: int,
) -> ledger_pb2.RecordBody:
    """The body both parties sign; ``countersignature`` is still empty."""
    body = ledger_pb2.RecordBody(network=network, agency=author, nonce=nonce,
                                 created_ms=created_ms)
    a = body.agreement
    a.provider, a.recipient = provider, recipient
    a.datasets.extend(sorted(set(datasets)))
    a.purpose, a.legal_basis = purpose, legal_basis
    a.valid_from_ms, a.valid_until_ms = valid_from_ms, valid_until_ms
    a.countersigner = countersigner.key_hash
    check_terms(body)
    return body


def revocation_body(*, network: str, author: str, agreement_id: bytes, reason: str,
                    nonce: bytes, created_ms: int) -> ledger_pb2.RecordBody:
    """A party's revocation of an agreement (effective at its block's time)."""
    if len(agreement_id) != 32:
        raise FormatError(f"an agreement id is 32 bytes, not {len(agreement_id)}")
    if len(reason) > MAX_NAME:
        raise FormatError(f"a revocation reason is at most {MAX_NAME} characters")
    return ledger_pb2.RecordBody(
        network=network, agency=author, nonce=nonce, created_ms=created_ms,
        revocation=ledger_pb2.AgreementRevocation(agreement_id=agreement_id, reason=reason))


def consent_message(body: ledger_pb2.RecordBody) -> bytes:
    """What the countersigner signs: the body with an empty countersignature."""
    unsigned = ledger_pb2.RecordBody()
    unsigned.CopyFrom(body)
    unsigned.agreement.countersignature = b""
    return AGREEMENT_CONSENT_CONTEXT + unsigned.SerializeToString(deterministic=True)


def countersign(body: ledger_pb2.RecordBody, key: SigningKey) -> ledger_pb2.RecordBody:
    """The other party's consent: returns a copy of ``body`` carrying its signature."""
    if body.WhichOneof("kind") != "agreement":
        raise FormatError("only an agreement record can be countersigned")
    if body.agreement.countersigner != key.verifier.key_hash:
        raise FormatError(f"the agreement names another countersigner than {key.name}")
    signed = ledger_pb2.RecordBody()
    signed.CopyFrom(body)
    signed.agreement.countersignature = key.sign(consent_message(body))
    return signed


def check_terms(body: ledger_pb2.RecordBody) -> None:
    """Stateless well-formedness of an agreement's terms; ``FormatError`` otherwise."""
    a = body.agreement
    if not a.provider or not a.recipient or a.provider == a.recipient:
        raise FormatError("an agreement needs two different agencies: provider and recipient")
    if body.agency not in (a.provider, a.recipient):
        raise FormatError(f"agency {body.agency!r} is neither provider nor recipient of the "
                          "agreement it authors")
    if not a.datasets or len(a.datasets) > MAX_DATASETS:
        raise FormatError(f"an agreement must name 1..{MAX_DATASETS} datasets")
    if len(set(a.datasets)) != len(a.datasets):
        raise FormatError("an agreement names a dataset twice")
    for name in (*a.datasets, a.purpose, a.legal_basis):
        if not name or len(name) > MAX_NAME:
            raise FormatError(f"agreement datasets, purpose and legal basis must be 1.."
                              f"{MAX_NAME} characters")
    if a.valid_until_ms <= a.valid_from_ms:
        raise FormatError("an agreement's valid_until must be after its valid_from: "
                          "every arrangement is time-limited")


def verify_agreement(record: Record, keyring: Keyring) -> Agreement:
    """Check an envelope-verified agreement record: terms and the other party's consent."""
    if record.kind != "agreement":
        raise FormatError(f"record is a {record.kind}, not an agreement")
    check_terms(record.body)
    a = record.body.agreement
    other = a.recipient if record.body.agency == a.provider else a.provider
    key = keyring.get(a.countersigner)
    if key is None:
        raise SignatureError(f"agreement countersigner {a.countersigner[:4].hex()} is not a "
                             "known key")
    if key.name != other:
        raise SignatureError(f"agreement must be countersigned by {other}, not {key.name}")
    if not key.verify(consent_message(record.body), a.countersignature):
        raise SignatureError(f"{other}'s countersignature on the agreement does not verify")
    return Agreement.from_record(record)

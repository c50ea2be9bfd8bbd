"""Agreements: both parties' signatures, terms, and what an agreement covers."""

from __future__ import annotations

import os

import pytest

from ledger.agreements import (
    Agreement,
    agreement_body,
    countersign,
    verify_agreement,
)
from ledger.errors import FormatError, SignatureError
from ledger.keys import SigningKey
from ledger.records import Keyring, sign_record, verify_envelope

NET = "test.example/agreements"
TAX = SigningKey.generate("tax", os.urandom)
SOCIAL = SigningKey.generate("social", os.urandom)
HEALTH = SigningKey.generate("health", os.urandom)
KEYRING = Keyring([TAX.verifier, SOCIAL.verifier, HEALTH.verifier])


def _body(author: str = "tax", countersigner: SigningKey = SOCIAL, **terms: object):
    args: dict[str, object] = dict(
        network=NET, author=author, provider="tax", recipient="social",
        datasets=["income", "household"], purpose="benefit-eligibility",
        legal_basis="Social Security Act s.12", valid_from_ms=1_000, valid_until_ms=2_000,
        countersigner=countersigner.verifier, nonce=os.urandom(16), created_ms=1_000,
    )
    args.update(terms)
    return agreement_body(**args)  # type: ignore[arg-type]


def _verified(body, author_key: SigningKey):
    return verify_envelope(sign_record(body, author_key), KEYRING, NET)


def test_countersigned_agreement_verifies_and_covers_its_terms() -> None:
    record = _verified(countersign(_body(), SOCIAL), TAX)
    agreement = verify_agreement(record, KEYRING)
    assert agreement == Agreement.from_record(record)
    assert agreement.agreement_id == record.record_id
    assert agreement.covers("tax", "social", "income", "benefit-eligibility", 1_000)
    assert agreement.covers("tax", "social", "household", "benefit-eligibility", 1_999)
    assert not agreement.covers("tax", "social", "income", "benefit-eligibility", 2_000)
    assert not agreement.covers("tax", "social", "income", "benefit-eligibility", 999)
    assert not agreement.covers("tax", "social", "health", "benefit-eligibility", 1_500)
    assert not agreement.covers("tax", "social", "income", "fraud-prevention", 1_500)
    assert not agreement.covers("social", "tax", "income", "benefit-eligibility", 1_500)


def test_recipient_may_author_and_provider_countersigns() -> None:
    body = _body(author="social", countersigner=TAX)
    agreement = verify_agreement(_verified(countersign(body, TAX), SOCIAL), KEYRING)
    assert (agreement.provider, agreement.recipient) == ("tax", "social")


def test_missing_or_wrong_consent_is_refused() -> None:
    with pytest.raises(SignatureError, match="countersignature"):
        verify_agreement(_verified(_body(), TAX), KEYRING)  # never countersigned
    with pytest.raises(SignatureError, match="countersigned by social, not health"):
        verify_agreement(_verified(countersign(_body(countersigner=HEALTH), HEALTH), TAX),
                         KEYRING)
    signed = countersign(_body(), SOCIAL)
    signed.agreement.valid_until_ms = 9_999  # terms changed after consent
    with pytest.raises(SignatureError, match="does not verify"):
        verify_agreement(_verified(signed, TAX), KEYRING)
    with pytest.raises(FormatError, match="another countersigner"):
        countersign(_body(), HEALTH)


@pytest.mark.parametrize(("terms", "message"), [
    ({"author": "health"}, "neither provider nor recipient"),
    ({"recipient": "tax"}, "two different agencies"),
    ({"datasets": []}, "datasets"),
    ({"purpose": ""}, "purpose"),
    ({"valid_until_ms": 1_000}, "time-limited"),
])
def test_bad_terms_are_refused(terms: dict[str, object], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        _body(**terms)

"""Signed agreements, revocations and events for policy tests (deterministic keys)."""

from __future__ import annotations

import itertools

from ledger.agreements import agreement_body, countersign, revocation_body
from ledger.genesis import Agency, Genesis, Validator
from ledger.keys import SigningKey
from ledger.policy import PolicyRules
from ledger.records import Envelope, sign_record
from proto import ledger_pb2

NET = "test.example/policy"
NAMES = ("tax", "social", "health", "audit")
KEYS = {n: SigningKey.generate(n, lambda k, n=n: n.encode().ljust(k, b"\x01")[:k])
        for n in NAMES}
VALIDATOR_KEYS = [SigningKey.generate(f"validator.{n}", lambda k, i=i: bytes([i + 1]) * k)
                  for i, n in enumerate(NAMES)]
GENESIS = Genesis(
    network=NET,
    validators=tuple(Validator(k.verifier) for k in VALIDATOR_KEYS),
    agencies=tuple(Agency(n, (KEYS[n].verifier,), role="auditor" if n == "audit" else "agency")
                   for n in NAMES),
)
RULES = PolicyRules.from_genesis(GENESIS)
_nonces = itertools.count(1)


def _nonce() -> bytes:
    return next(_nonces).to_bytes(16, "big")


def agreement(provider: str = "tax", recipient: str = "social",
              datasets: tuple[str, ...] = ("income",), purpose: str = "benefits",
              valid: tuple[int, int] = (1_000, 2_000), author: str | None = None) -> Envelope:
    """A countersigned agreement, authored by ``author`` (default: the provider)."""
    author = author or provider
    other = recipient if author == provider else provider
    body = agreement_body(
        network=NET, author=author, provider=provider, recipient=recipient, datasets=datasets,
        purpose=purpose, legal_basis="Act s.1", valid_from_ms=valid[0], valid_until_ms=valid[1],
        countersigner=KEYS[other].verifier, nonce=_nonce(), created_ms=0,
    )
    return sign_record(countersign(body, KEYS[other]), KEYS[author])


def revocation(agreement_id: bytes, author: str = "tax") -> Envelope:
    body = revocation_body(network=NET, author=author, agreement_id=agreement_id,
                           reason="ended", nonce=_nonce(), created_ms=0)
    return sign_record(body, KEYS[author])


def event(agreement_id: bytes, provider: str = "tax", recipient: str = "social",
          dataset: str = "income", purpose: str = "benefits",
          author: str | None = None) -> Envelope:
    author = author or provider
    body = ledger_pb2.RecordBody(
        network=NET, agency=author, nonce=_nonce(),
        sharing_event=ledger_pb2.SharingEvent(provider=provider, recipient=recipient,
                                              dataset=dataset, purpose=purpose,
                                              agreement_id=agreement_id),
    )
    return sign_record(body, KEYS[author])


def anchor(author: str = "tax") -> Envelope:
    body = ledger_pb2.RecordBody(network=NET, agency=author, nonce=_nonce(),
                                 anchor=ledger_pb2.Anchor(source="registry", version="1"))
    return sign_record(body, KEYS[author])

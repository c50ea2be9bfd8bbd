"""The per-record part of a ledger audit: format, signature and body of every envelope.

It is the hot path (one Ed25519 verification per record, about 44 us on one core), so it
works on chunks of envelopes (one entry bundle), touches no protobuf object on the
envelope (``Envelope.split`` checks the canonical bytes directly) and calls libsodium
through pynacl's binding with no per-call wrapper objects. A ``RecordChecker`` is plain
data, so the same checker runs in this process (``--jobs 1``) or, pickled once, in
worker processes (``--jobs N``): pynacl releases the GIL, but protobuf parsing does not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from hashlib import sha256

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from ledger.errors import FormatError, VerificationError
from ledger.genesis import Genesis
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.records import RECORD_CONTEXT, Envelope, decode_body


@dataclass(frozen=True)
class RecordChunk:
    """Envelopes ``first_index ..`` of one entry bundle, or why the bundle is unreadable."""

    first_index: int
    envelopes: tuple[bytes, ...]
    error: str = ""


@dataclass(frozen=True)
class AgreementSeen:
    index: int
    record_id: bytes
    agency: str
    provider: str
    recipient: str
    purpose: str
    datasets: tuple[str, ...]
    valid_from_ms: int
    valid_until_ms: int


@dataclass(frozen=True)
class RevocationSeen:
    index: int
    agreement_id: bytes
    agency: str


@dataclass
class ChunkResult:
    """What the checker found in one chunk; ``failure`` = (index, reason) of the first bad
    record, after which the chunk was not read further."""

    first_index: int
    checked: int = 0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    record_ids: list[bytes] = field(default_factory=list)
    agreements: list[AgreementSeen] = field(default_factory=list)
    revocations: list[RevocationSeen] = field(default_factory=list)
    event_agreements: list[tuple[int, bytes]] = field(default_factory=list)
    anomalies: list[tuple[int, str]] = field(default_factory=list)
    failure: tuple[int, str] | None = None
    unreadable: str = ""
    """Why the chunk's bundle could not be read (nothing in it was checked)."""


@dataclass(frozen=True)
class RecordChecker:
    """Checks envelopes against the genesis: network, signer key, signature, body."""

    network: str
    keys: tuple[tuple[bytes, str, bytes], ...]
    """(key hash, agency name, Ed25519 public key) of every record-signing key."""
    limits: Limits = DEFAULT_LIMITS
    in_force: tuple[tuple[bytes, tuple[tuple[int, int], ...]], ...] = ()
    """Governance: for keys in force only for some leaf index ranges [first, end) (end -1:
    open), those ranges (``MembershipHistory.key_ranges``); empty: every key, always."""

    @classmethod
    def from_genesis(cls, genesis: Genesis, limits: Limits = DEFAULT_LIMITS) -> RecordChecker:
        keys = tuple((k.key_hash, k.name, k.public_key)
                     for agency in genesis.agencies for k in agency.record_keys)
        return cls(genesis.network, keys, limits)

    def __call__(self, chunk: RecordChunk) -> ChunkResult:
        result = ChunkResult(chunk.first_index)
        if chunk.error:
            result.unreadable = chunk.error
            return result
        keys = {key_hash: (name, public) for key_hash, name, public in self.keys}
        spans = dict(self.in_force) if self.in_force else None
        for offset, raw in enumerate(chunk.envelopes):
            try:
                self._check(chunk.first_index + offset, raw, keys, result, spans)
            except VerificationError as exc:
                result.failure = (chunk.first_index + offset, str(exc))
                break
            result.checked += 1
        return result

    def _check(self, index: int, raw: bytes, keys: dict[bytes, tuple[str, bytes]],
               result: ChunkResult,
               spans: dict[bytes, tuple[tuple[int, int], ...]] | None = None) -> None:
        body_bytes, signer, signature = Envelope.split(raw, self.limits)
        known = keys.get(signer)
        if known is None:
            raise VerificationError(f"record signer {signer[:4].hex()} is not a genesis key")
        name, public = known
        if spans is not None and not any(first <= index and (end < 0 or index < end)
                                         for first, end in spans.get(signer, ())):
            raise VerificationError(f"record signer {signer[:4].hex()} ({name}) is not a "
                                    "record key of the membership in force at this index")
        try:
            crypto_sign_open(signature + RECORD_CONTEXT + body_bytes, public)
        except BadSignatureError as exc:
            raise VerificationError(f"record signature by {name} does not verify") from exc
        body = decode_body(body_bytes)
        if body.network != self.network:
            raise FormatError(f"record is for network {body.network!r}, not {self.network!r}")
        if body.agency != name:
            raise VerificationError(f"record claims agency {body.agency!r}, signed by {name}")
        kind = body.WhichOneof("kind") or ""
        result.counts[(name, kind)] += 1
        rid = sha256(body_bytes).digest()  # record_id(), inlined on this hot path
        result.record_ids.append(rid)
        if kind == "sharing_event":
            event = body.sharing_event
            if event.provider != name:
                result.anomalies.append(
                    (index, f"sharing event by {name} names provider {event.provider!r}"))
            if event.agreement_id:
                result.event_agreements.append((index, bytes(event.agreement_id)))
        elif kind == "agreement":
            a = body.agreement
            result.agreements.append(AgreementSeen(
                index, rid, name, a.provider, a.recipient, a.purpose, tuple(a.datasets),
                a.valid_from_ms, a.valid_until_ms))
        elif kind == "revocation":
            result.revocations.append(
                RevocationSeen(index, bytes(body.revocation.agreement_id), name))

"""The per-record part of a ledger audit: format, signature and body of every envelope.

It is the hot path: one Ed25519 verification per record (about 64 us on one core here)
and everything else must stay small beside it (docs/PERFORMANCE.md, "Full-ledger audit").
A chunk (one entry bundle) is checked in two passes that together give exactly the
result of checking record by record, first failure included:
1. envelopes in order: canonical bytes (the one canonical header of the envelope's size
   and the two field tags at fixed offsets; ``Envelope.split`` words any error), genesis
   signer, then the Ed25519 signatures in a tight loop through libsodium's
   ``crypto_sign_open`` called directly (pynacl's cffi ``lib``, one reused output buffer
   per chunk: no wrapper objects per call); it stops at the first bad envelope;
2. the bodies of the envelopes that passed, parsed by protobuf's C parser in one call:
   a run of canonical envelopes concatenated *is* a valid ``EnvelopeRun`` (below), whose
   repeated ``body`` field holds each ``RecordBody``. Each body then gets the checks of
   ``records.decode_body`` (kind, nonce, network, agency; an anchor, an odd body or a run
   that does not parse goes through ``decode_body`` itself, for the same checks and the
   same error message), the network and author checks, and the summary facts.
A ``RecordChecker`` is plain data, so the same checker runs in this process (``--jobs 1``)
or, pickled once, in worker processes (``--jobs N``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from nacl._sodium import ffi, lib

from ledger.errors import FormatError
from ledger.genesis import Genesis
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.records import NONCE_MAX, NONCE_MIN, RECORD_CONTEXT, Envelope, decode_body
from proto import ledger_pb2


def _envelope_run_class() -> Any:
    """``message EnvelopeRun { repeated RecordBody body = 1; repeated bytes signer = 2;
    repeated bytes signature = 3; }``: ``Envelope`` with its fields repeated and the body
    typed, so envelopes laid end to end parse as one message. Defined here at import
    rather than in ledger.proto: it is this module's parsing device, not a wire format."""
    fields = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="shadowledger/audit_records.proto", package="shadowledger.audit",
        syntax="proto3", dependency=[ledger_pb2.DESCRIPTOR.name])
    run = proto.message_type.add(name="EnvelopeRun")
    run.field.add(name="body", number=1, type=fields.TYPE_MESSAGE,
                  label=fields.LABEL_REPEATED, type_name=".shadowledger.v1.RecordBody")
    run.field.add(name="signer", number=2, type=fields.TYPE_BYTES,
                  label=fields.LABEL_REPEATED)
    run.field.add(name="signature", number=3, type=fields.TYPE_BYTES,
                  label=fields.LABEL_REPEATED)
    pool = descriptor_pool.Default()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("shadowledger.audit.EnvelopeRun"))


_EnvelopeRun = _envelope_run_class()


def _canonical_head(size: int) -> bytes:
    """The bytes before the body in the one canonical envelope layout of ``size`` bytes,
    ``0x0A varint(len body)`` (minimal varint, body not empty; the last 100 bytes are
    ``0x12 0x20`` key hash ``0x1A 0x40`` signature), or b"" if no canonical envelope has
    that size (e.g. 230 bytes: a 128-byte body needs a 2-byte varint)."""
    for head_size in (2, 3, 4):
        body = size - 100 - head_size
        if body >= 1 and (body.bit_length() + 6) // 7 == head_size - 1:
            varint = bytearray()
            while body >= 0x80:
                varint.append(body & 0x7F | 0x80)
                body >>= 7
            return b"\x0a" + bytes(varint) + bytes([body])
    return b""


_HEADS: dict[int, bytes] = {}
"""``_canonical_head`` by envelope size, filled as sizes are met."""


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
        bodies, names, failure = self._signatures(chunk.envelopes, chunk.first_index)
        self._bodies(chunk, bodies, names, result)
        if result.failure is None and failure is not None:
            result.failure = (chunk.first_index + len(bodies), failure)
        return result

    def _signatures(self, envelopes: Sequence[bytes], first_index: int = 0
                    ) -> tuple[list[bytes], list[str], str | None]:
        """Pass 1: (bodies, signer names) of the envelopes before the first one that is not
        canonical, not by a genesis key or not signed, and why that one failed.

        Framing and keys are checked first for the whole chunk, then the signatures in a
        loop that does nothing else, so libsodium's code and tables stay in the CPU caches
        from one call to the next (measured: about +0.01 of the ratio to raw verification,
        docs/PERFORMANCE.md). The first failure is still the first in record order: the
        framing loop stops at the first bad envelope, the signature loop runs over the
        envelopes before it only."""
        keys = {key_hash: (name, public) for key_hash, name, public in self.keys}
        spans = dict(self.in_force) if self.in_force else None
        limit, context, heads = self.limits.max_record_bytes, RECORD_CONTEXT, _HEADS
        bodies: list[bytes] = []
        names: list[str] = []
        signed: list[bytes] = []
        publics: list[bytes] = []
        failure: str | None = None
        for index, raw in enumerate(envelopes, first_index):
            size = len(raw)
            head = heads.get(size)
            if head is None:
                head = heads[size] = _canonical_head(size)
            if (head and size <= limit and raw.startswith(head)
                    and raw.startswith(b"\x12\x20", size - 100)
                    and raw.startswith(b"\x1a\x40", size - 66)):
                body = raw[len(head) : size - 100]
                signer, signature = raw[size - 98 : size - 66], raw[size - 64 :]
            else:  # not the canonical layout: Envelope.split says why (or takes it)
                try:
                    body, signer, signature = Envelope.split(raw, self.limits)
                except FormatError as exc:
                    failure = str(exc)
                    break
            known = keys.get(signer)
            if known is None:
                failure = f"record signer {signer[:4].hex()} is not a genesis key"
                break
            if spans is not None and not any(first <= index and (end < 0 or index < end)
                                             for first, end in spans.get(signer, ())):
                failure = (f"record signer {signer[:4].hex()} ({known[0]}) is not a record "
                           "key of the membership in force at this index")
                break
            bodies.append(body)
            names.append(known[0])
            signed.append(signature + context + body)
            publics.append(known[1])
        verify = lib.crypto_sign_open
        opened = ffi.new("unsigned char[]", limit + len(context))
        opened_len = ffi.new("unsigned long long *")
        for k, message in enumerate(signed):
            if verify(opened, opened_len, message, len(message), publics[k]) != 0:
                failure = f"record signature by {names[k]} does not verify"
                del bodies[k:], names[k:]
                break
        return bodies, names, failure

    def _bodies(self, chunk: RecordChunk, bodies: list[bytes], names: list[str],
                result: ChunkResult) -> None:
        """Pass 2: body checks and summary facts of the envelopes pass 1 accepted."""
        parsed: Sequence[Any] = [None] * len(bodies)  # None: decode_body parses it
        if bodies and self.network and all(names):  # else the checks below are not enough
            run = _EnvelopeRun()
            try:
                run.ParseFromString(b"".join(chunk.envelopes[: len(bodies)]))
                parsed = run.body  # one body per canonical envelope
            except DecodeError:
                pass  # some body is bad: decode_body below names the first one
        first, network = chunk.first_index, self.network
        rids = [sha256(b).digest() for b in bodies]  # record_id(), inlined on this hot path
        kinds: list[str] = []
        events = result.event_agreements
        body: Any
        for offset, (name, body) in enumerate(zip(names, parsed, strict=True)):
            # A sharing event (nearly every record) that names this network and its signer
            # passes every check of decode_body and the two below: nothing more to read.
            kind = body.WhichOneof("kind") if body is not None else None
            if (kind != "sharing_event" or body.network != network or body.agency != name
                    or not NONCE_MIN <= len(body.nonce) <= NONCE_MAX):
                body, failure = self._body(bodies[offset], name)
                if failure:
                    result.failure = (first + offset, failure)
                    break
                kind = body.WhichOneof("kind")
            kinds.append(kind)
            if kind == "sharing_event":
                event = body.sharing_event
                if event.provider != name:
                    result.anomalies.append((first + offset, f"sharing event by {name} names"
                                                             f" provider {event.provider!r}"))
                if cited := event.agreement_id:
                    events.append((first + offset, cited))
            elif kind == "agreement":
                a = body.agreement
                result.agreements.append(AgreementSeen(
                    first + offset, rids[offset], name, a.provider, a.recipient, a.purpose,
                    tuple(a.datasets), a.valid_from_ms, a.valid_until_ms))
            elif kind == "revocation":
                result.revocations.append(
                    RevocationSeen(first + offset, body.revocation.agreement_id, name))
        result.counts.update(zip(names, kinds, strict=False))  # names beyond a failure
        result.checked = len(kinds)
        result.record_ids.extend(rids[: len(kinds)])

    def _body(self, body_bytes: bytes, name: str) -> tuple[Any, str]:
        """(body, "") if it passes ``decode_body``, names this network and its signer;
        else (None, why not), checked in that order."""
        try:
            body = decode_body(body_bytes)
        except FormatError as exc:
            return None, str(exc)
        if body.network != self.network:
            return None, f"record is for network {body.network!r}, not {self.network!r}"
        if body.agency != name:
            return None, f"record claims agency {body.agency!r}, signed by {name}"
        return body, ""

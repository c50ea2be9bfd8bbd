"""Signed record envelopes: the unit agencies submit and the ledger commits.

An envelope is the protobuf ``Envelope{body, signer, signature}``; ``body`` is the exact
serialized ``RecordBody`` the signer signed. Verification checks those received bytes and
never a re-encoding. The committed envelope bytes are the RFC 9162 Merkle leaf.

Envelopes must be canonically encoded (fields in order, no unknown or repeated fields):
otherwise one signed record could be committed twice under different leaf bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from google.protobuf.message import DecodeError

from ledger import merkle
from ledger.anchors import check_rows
from ledger.errors import FormatError, SignatureError
from ledger.keys import SigningKey, VerifierKey
from ledger.limits import DEFAULT_LIMITS, Limits
from proto import ledger_pb2

RECORD_CONTEXT = b"shadowledger/record/v1\n"
"""Prefix of every signed record message: a record signature can never pass for a note,
a vote or a checkpoint signature (those sign other, disjoint prefixes)."""

KINDS = ("sharing_event", "anchor", "agreement", "revocation", "governance", "reconciliation")
NONCE_MIN, NONCE_MAX = 16, 32
KEY_HASH_SIZE = 32
SIGNATURE_SIZE = 64


def record_id(body: bytes) -> bytes:
    """The record's identity: SHA-256 of its signed body bytes."""
    return hashlib.sha256(body).digest()


def signing_message(body: bytes) -> bytes:
    return RECORD_CONTEXT + body


@dataclass(frozen=True)
class Envelope:
    """A signed record, kept as the exact bytes it arrived in."""

    raw: bytes
    body: bytes
    signer: bytes
    signature: bytes

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
        """Parse and bound-check; raise ``FormatError`` on anything malformed."""
        if len(data) > limits.max_record_bytes:
            raise FormatError(
                f"record is {len(data)} bytes, over the limit of {limits.max_record_bytes}"
            )
        msg = ledger_pb2.Envelope()
        try:
            msg.ParseFromString(data)
        except DecodeError as exc:
            raise FormatError(f"record envelope is not valid protobuf: {exc}") from exc
        # Rebuilt from the three known fields: unknown, repeated or reordered fields differ.
        canonical = ledger_pb2.Envelope(body=msg.body, signer=msg.signer, signature=msg.signature)
        if canonical.SerializeToString(deterministic=True) != data:
            raise FormatError("record envelope is not canonically encoded")
        if len(msg.signer) != KEY_HASH_SIZE:
            raise FormatError(f"signer key id is {len(msg.signer)} bytes, want {KEY_HASH_SIZE}")
        if len(msg.signature) != SIGNATURE_SIZE:
            raise FormatError(f"signature is {len(msg.signature)} bytes, want {SIGNATURE_SIZE}")
        if not msg.body:
            raise FormatError("record body is empty")
        return cls(bytes(data), msg.body, msg.signer, msg.signature)

    def to_bytes(self) -> bytes:
        return self.raw

    @staticmethod
    def split(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, bytes, bytes]:
        """(body, signer, signature) of exactly the envelopes ``from_bytes`` accepts.

        The fast path of bulk verifiers (``ledger.audit``): a canonical envelope is
        ``0x0A varint(len body) body 0x12 0x20 signer 0x1A 0x40 signature`` (fields in
        order, each once, minimal varint, proto3 omits nothing since none may be empty),
        so it is checked byte by byte without building protobuf objects.
        """
        if len(data) > limits.max_record_bytes:
            raise FormatError(
                f"record is {len(data)} bytes, over the limit of {limits.max_record_bytes}"
            )
        size = len(data)
        if size < 2 or data[0] != 0x0A:
            raise FormatError("record envelope does not start with its body field")
        # The body length as a minimal varint: at most 3 bytes below the 64 KiB bound
        # (a longer one cannot fit in the envelope), unrolled as this runs per record.
        length, pos = data[1], 2
        if length & 0x80:
            if size < 4 or (data[3] & 0x80 and data[2] & 0x80):
                raise FormatError("record envelope body length is malformed")
            length = (length & 0x7F) | (data[2] & 0x7F) << 7
            pos = 3
            if data[2] & 0x80:
                length |= data[3] << 14
                pos = 4
            if not data[pos - 1]:
                raise FormatError("record envelope is not canonically encoded")
        if not length:
            raise FormatError("record envelope is not canonically encoded")
        body, pos = data[pos : pos + length], pos + length
        if data[pos : pos + 2] != b"\x12\x20" or data[pos + 34 : pos + 36] != b"\x1a\x40":
            raise FormatError("record envelope is not canonically encoded")
        if len(data) != pos + 36 + SIGNATURE_SIZE:
            raise FormatError("record envelope has a wrong length or trailing bytes")
        return body, data[pos + 2 : pos + 34], data[pos + 36 :]

    @cached_property
    def record_id(self) -> bytes:
        """Computed once per envelope (a node asks for it at every step of a record)."""
        return record_id(self.body)

    @cached_property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.raw)


@dataclass(frozen=True)
class Record:
    """A verified envelope with its decoded body."""

    envelope: Envelope
    body: ledger_pb2.RecordBody
    signer: VerifierKey

    @property
    def kind(self) -> str:
        return self.body.WhichOneof("kind") or ""

    @property
    def record_id(self) -> bytes:
        return self.envelope.record_id


class Keyring:
    """Record-signing keys trusted by a network, by key hash. Key name = agency name."""

    def __init__(self, keys: Iterable[VerifierKey] = ()) -> None:
        self._keys: dict[bytes, VerifierKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: VerifierKey) -> None:
        self._keys[key.key_hash] = key

    def get(self, key_hash: bytes) -> VerifierKey | None:
        return self._keys.get(key_hash)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key_hash: object) -> bool:
        return key_hash in self._keys


def sign_record(body: ledger_pb2.RecordBody, key: SigningKey) -> Envelope:
    """Serialize ``body`` once and sign those bytes (the author's side)."""
    body_bytes = body.SerializeToString(deterministic=True)
    signature = key.sign(signing_message(body_bytes))
    env = ledger_pb2.Envelope(body=body_bytes, signer=key.verifier.key_hash, signature=signature)
    return Envelope.from_bytes(env.SerializeToString(deterministic=True))


def verify_envelope(envelope: Envelope, keyring: Keyring, network: str) -> Record:
    """Check signer, signature and body; raise ``SignatureError`` / ``FormatError``."""
    key = keyring.get(envelope.signer)
    if key is None:
        raise SignatureError(f"record signer {envelope.signer[:4].hex()} is not a known key")
    if not key.verify(signing_message(envelope.body), envelope.signature):
        raise SignatureError(f"record signature by {key.name} does not verify")
    body = decode_body(envelope.body)
    if body.network != network:
        raise FormatError(f"record is for network {body.network!r}, not {network!r}")
    if body.agency != key.name:
        raise SignatureError(f"record claims agency {body.agency!r} but is signed by {key.name}")
    return Record(envelope, body, key)


def decode_body(data: bytes) -> ledger_pb2.RecordBody:
    """Parse a ``RecordBody`` and check the fields every kind needs."""
    body = ledger_pb2.RecordBody()
    try:
        body.ParseFromString(data)
    except DecodeError as exc:
        raise FormatError(f"record body is not valid protobuf: {exc}") from exc
    if body.WhichOneof("kind") is None:
        raise FormatError(f"record body has no kind (one of {', '.join(KINDS)})")
    if not NONCE_MIN <= len(body.nonce) <= NONCE_MAX:
        raise FormatError(f"record nonce is {len(body.nonce)} bytes, want {NONCE_MIN}..{NONCE_MAX}")
    if not body.agency or not body.network:
        raise FormatError("record body must name its network and agency")
    if body.WhichOneof("kind") == "anchor":
        check_rows(body.anchor)
    return body

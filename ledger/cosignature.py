"""C2SP tlog-cosignature, Ed25519 type (cosignature/v1): witness cosignatures on checkpoints.

- Key ID: SHA-256(name || "\\n" || 0x04 || 32-byte public key)[:4] (tlog-cosignature "Format").
- Signature bytes after the key ID: ``timestamped_signature`` = u64 big-endian timestamp ||
  64-byte Ed25519 signature (RFC 8446 3.3 serialization); timestamp <= 2^63 - 1.
- Signed message ("Ed25519 signed message"): ``cosignature/v1\\n`` ``time <decimal>\\n`` then
  the whole checkpoint note text (with its final newline, without signature lines).

Time is always passed in by the caller; nothing here reads a clock.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.checkpoint import Checkpoint
from ledger.errors import SignatureError, UsageError
from ledger.keys import ALG_COSIGNATURE_V1, SIGNATURE_SIZE, SigningKey, VerifierKey
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.note import Note, NoteSignature, match_signatures

HEADER = "cosignature/v1"
MAX_TIMESTAMP = 2**63 - 1
TIMESTAMP_SIZE = 8
TIMESTAMPED_SIGNATURE_SIZE = TIMESTAMP_SIZE + SIGNATURE_SIZE


def _check_timestamp(timestamp: int) -> None:
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise UsageError(f"timestamp {timestamp} is outside 0..2^63-1")


def _message(note_text: str, timestamp: int) -> bytes:
    # "Ed25519 signed message": header line, timestamp line (decimal, no leading zeros), body.
    return f"{HEADER}\ntime {timestamp}\n{note_text}".encode()


def cosigned_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    """The exact bytes a cosigner signs for ``checkpoint`` at POSIX time ``timestamp``."""
    _check_timestamp(timestamp)
    return _message(checkpoint.to_text(), timestamp)


def cosign(checkpoint: Checkpoint, key: SigningKey, timestamp: int) -> NoteSignature:
    """A witness cosignature line (key type 0x04) over ``checkpoint`` at ``timestamp``."""
    if key.alg != ALG_COSIGNATURE_V1:
        raise UsageError(f"cosigner key {key.name} must be type 0x04, got {key.alg:#04x}")
    signature = key.sign(cosigned_message(checkpoint, timestamp))
    return NoteSignature(
        key.name, key.key_id, timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature
    )


def _verify(note_text: str, signature: NoteSignature, key: VerifierKey) -> int:
    raw = signature.signature
    label = f"{key.name}+{key.key_id.hex()}"
    if len(raw) != TIMESTAMPED_SIGNATURE_SIZE:
        raise SignatureError(f"cosignature from {label} is {len(raw)} bytes, expected 72")
    timestamp = int.from_bytes(raw[:TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise SignatureError(f"cosignature from {label} has a timestamp above 2^63-1")
    if not key.verify(_message(note_text, timestamp), raw[TIMESTAMP_SIZE:]):
        raise SignatureError(f"invalid cosignature from witness {label}")
    return timestamp


def verify_cosignature(checkpoint: Checkpoint, signature: NoteSignature, key: VerifierKey) -> int:
    """Check one cosignature line from ``key``; returns its timestamp, else SignatureError."""
    if key.alg != ALG_COSIGNATURE_V1:
        raise UsageError(f"witness key {key.name} must be type 0x04, got {key.alg:#04x}")
    if signature.name != key.name or not hmac.compare_digest(signature.key_id, key.key_id):
        raise SignatureError(f"signature line is from {signature.name}, not witness {key.name}")
    return _verify(checkpoint.to_text(), signature, key)


@dataclass(frozen=True)
class Cosignature:
    """A verified statement by ``witness`` that it saw the checkpoint as of ``timestamp``."""

    witness: VerifierKey
    timestamp: int


@dataclass(frozen=True)
class CosignatureVerification:
    """Distinct known witnesses with valid cosignatures, and how many lines were unknown."""

    checkpoint: Checkpoint
    cosignatures: tuple[Cosignature, ...]
    unknown: int

    @property
    def witnesses(self) -> frozenset[bytes]:
        """Key hashes of the witnesses that cosigned."""
        return frozenset(c.witness.key_hash for c in self.cosignatures)


def verify_cosignatures(
    note_bytes: bytes, witnesses: Sequence[VerifierKey], limits: Limits = DEFAULT_LIMITS
) -> CosignatureVerification:
    """Verify every cosignature of a known witness on a signed checkpoint.

    Lines from other keys (the validators' own signatures included) are ignored; an invalid
    cosignature from a known witness raises SignatureError. A witness that cosigned more than
    once is reported once, with its latest timestamp. Thresholds are the caller's policy.
    """
    note = Note.from_bytes(note_bytes, limits)
    checkpoint = Checkpoint.from_text(note.text, limits)
    pairs, unknown = match_signatures(note, witnesses, ALG_COSIGNATURE_V1)
    latest: dict[bytes, Cosignature] = {}
    for key, sig in pairs:
        timestamp = _verify(note.text, sig, key)
        seen = latest.get(key.key_hash)
        if seen is None or timestamp > seen.timestamp:
            latest[key.key_hash] = Cosignature(key, timestamp)
    return CosignatureVerification(checkpoint, tuple(latest.values()), unknown)

"""Ed25519 keys in the C2SP signed-note encodings (verifier keys, signer keys).

- c2sp.org/signed-note "Signatures": key ID = SHA-256(name || 0x0A || type || public key)[:4].
- Signature type 0x01: Ed25519 note signatures (signed-note "Ed25519 signatures").
- Signature type 0x04: timestamped Ed25519 witness cosignatures (c2sp.org/tlog-cosignature).
- Verifier key text ("vkey"): ``<name>+<hex key ID>+<base64(type || public key)>`` and signer
  key text ("skey"): ``PRIVATE+KEY+<name>+<hex key ID>+<base64(type || seed)>``, the encodings
  of golang.org/x/mod/sumdb/note that the C2SP specs reference as "vkeys".

Ed25519 is libsodium's (the copy PyNaCl ships), called so that it keeps the GIL
(``ledger/ed25519.py``: PyNaCl's own calls release it, which costs up to 5 ms a call when
other threads are busy): measured here at ~53 us per verify against ~107 us for
``cryptography`` (OpenSSL), and ~20 us against ~32 us per signature. One library for every
node also keeps the accept/reject decision on edge-case signatures identical everywhere.
Randomness is never drawn here: ``SigningKey.generate`` takes the random source.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ledger import ed25519
from ledger.errors import FormatError, UsageError
from ledger.limits import DEFAULT_LIMITS, Limits

ALG_ED25519 = 0x01
"""signed-note "Signature types": Ed25519 signatures over the note text."""
ALG_COSIGNATURE_V1 = 0x04
"""signed-note "Signature types": timestamped Ed25519 witness cosignatures (tlog-cosignature)."""
SUPPORTED_ALGS = frozenset({ALG_ED25519, ALG_COSIGNATURE_V1})

PUBLIC_KEY_SIZE = ed25519.PUBLIC_KEY_SIZE
SEED_SIZE = 32
SIGNATURE_SIZE = ed25519.SIGNATURE_SIZE
KEY_ID_SIZE = 4

_SKEY_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-f]{8}")
_B64_KEY_CHARS = 44  # base64 of 1 type byte + 32 key bytes


def decode_base64(text: str, what: str) -> bytes:
    """Decode canonical standard base64 (RFC 4648 section 4, padded) or raise FormatError.

    Non-canonical encodings (stray padding bits, missing padding) are refused so that every
    accepted input re-encodes to the same bytes: parsing is a byte-exact round trip.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what}: not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what}: base64 is not in canonical form")
    return raw


def encode_base64(raw: bytes) -> str:
    """Standard padded base64 (RFC 4648 section 4), as text."""
    return base64.b64encode(raw).decode("ascii")


def check_key_name(name: str, limits: Limits | None = DEFAULT_LIMITS) -> None:
    """Raise FormatError unless ``name`` is a valid key name (within ``limits``, if given).

    signed-note "Format": non-empty, no Unicode spaces, no plus (U+002B). ASCII control
    characters are refused too: such a name could never appear in a valid signed note.
    Constructors pass ``limits=None``: the length bound is for untrusted input only.
    """
    if not name:
        raise FormatError("key name is empty")
    if limits and len(name.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        raise FormatError(f"key name is longer than {limits.max_name_bytes} bytes")
    for ch in name:
        if ch == "+" or ch < " " or ch == "\x7f" or ch.isspace():
            raise FormatError(f"key name {name!r} contains {ch!r} (no spaces, '+' or controls)")
        if "\ud800" <= ch <= "\udfff":
            raise FormatError("key name is not valid Unicode text")


def compute_key_hash(name: str, alg: int, public_key: bytes) -> bytes:
    """signed-note "Signatures": SHA-256(key name || 0x0A || type || public key); ID is [:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()


def _check_alg(alg: int) -> None:
    if alg not in SUPPORTED_ALGS:
        raise UsageError(f"unsupported signature type {alg:#04x} (only 0x01 and 0x04)")


def _split_key_text(text: str, what: str, limits: Limits) -> tuple[str, bytes, int, bytes]:
    """Parse ``name+hex8+base64(type || key)``; returns (name, key id, type, key bytes)."""
    if len(text) > limits.max_name_bytes + 2 + 8 + _B64_KEY_CHARS:
        raise FormatError(f"{what} is too long")
    parts = text.split("+", 2)  # the name has no '+'; the base64 part may
    if len(parts) != 3:
        raise FormatError(f"{what} is not name+keyid+key")
    name, hex_id, key64 = parts
    check_key_name(name, limits)
    if not _HEX8.fullmatch(hex_id):
        raise FormatError(f"{what} key ID {hex_id!r} is not 8 lowercase hex digits")
    raw = decode_base64(key64, f"{what} key")
    if len(raw) != 1 + PUBLIC_KEY_SIZE:
        raise FormatError(f"{what} key is {len(raw)} bytes, expected 33")
    if raw[0] not in SUPPORTED_ALGS:
        raise FormatError(f"{what} has unsupported signature type {raw[0]:#04x}")
    return name, bytes.fromhex(hex_id), raw[0], raw[1:]


@dataclass(frozen=True)
class VerifierKey:
    """A trusted Ed25519 public key with its signed-note name and signature type."""

    name: str
    public_key: bytes
    alg: int = ALG_ED25519
    _key_hash: bytes = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        try:
            check_key_name(self.name, None)
        except FormatError as exc:
            raise UsageError(str(exc)) from exc
        _check_alg(self.alg)
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise UsageError(f"Ed25519 public key must be 32 bytes, got {len(self.public_key)}")
        # Cache the hash: it is used on every verification.
        object.__setattr__(self, "public_key", bytes(self.public_key))
        object.__setattr__(
            self, "_key_hash", compute_key_hash(self.name, self.alg, self.public_key)
        )

    @property
    def key_hash(self) -> bytes:
        """The full 32-byte SHA-256 the key ID is cut from; a collision-free identity."""
        return self._key_hash

    @property
    def key_id(self) -> bytes:
        """signed-note key ID: the first four bytes of ``key_hash`` (big-endian uint32)."""
        return self._key_hash[:KEY_ID_SIZE]

    def to_vkey(self) -> str:
        """``name+hex8+base64(type || public key)``."""
        material = encode_base64(bytes([self.alg]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def from_vkey(cls, text: str, limits: Limits = DEFAULT_LIMITS) -> VerifierKey:
        """Parse a verifier key; FormatError if malformed or if the key ID does not match."""
        name, key_id, alg, public_key = _split_key_text(text, "verifier key", limits)
        key = cls(name, public_key, alg)
        if not hmac.compare_digest(key.key_id, key_id):
            raise FormatError(f"verifier key ID {key_id.hex()} does not match the key")
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is a valid Ed25519 signature of ``message`` (RFC 8032)."""
        return ed25519.verify(self.public_key, message, signature)


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key (RFC 8032 32-byte seed) with its name and signature type."""

    name: str
    seed: bytes = field(repr=False)
    alg: int = ALG_ED25519
    _secret: bytes = field(init=False, repr=False, compare=False, hash=False)
    _verifier: VerifierKey = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_SIZE:
            raise UsageError(f"Ed25519 seed must be 32 bytes, got {len(self.seed)}")
        public_key, secret = ed25519.secret_key(self.seed)
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "_verifier", VerifierKey(self.name, public_key, self.alg))

    @property
    def verifier(self) -> VerifierKey:
        return self._verifier

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` (deterministic, RFC 8032 5.1.6)."""
        return ed25519.sign(self._secret, message)

    def to_skey(self) -> str:
        """``PRIVATE+KEY+name+hex8+base64(type || seed)``: secret, keep it off logs."""
        material = encode_base64(bytes([self.alg]) + self.seed)
        return f"{_SKEY_PREFIX}{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def from_skey(cls, text: str, limits: Limits = DEFAULT_LIMITS) -> SigningKey:
        """Parse a signer key; FormatError if malformed or if the key ID does not match."""
        if not text.startswith(_SKEY_PREFIX):
            raise FormatError("signer key does not start with PRIVATE+KEY+")
        rest = text[len(_SKEY_PREFIX) :]
        name, key_id, alg, seed = _split_key_text(rest, "signer key", limits)
        key = cls(name, seed, alg)
        # The ID hashes the public key, so it can only be checked after deriving it.
        if not hmac.compare_digest(key.key_id, key_id):
            raise FormatError(f"signer key ID {key_id.hex()} does not match the key")
        return key

    @classmethod
    def generate(
        cls, name: str, random_bytes: Callable[[int], bytes], alg: int = ALG_ED25519
    ) -> SigningKey:
        """A new key from ``random_bytes(32)`` (e.g. ``os.urandom``, passed in by the caller)."""
        seed = random_bytes(SEED_SIZE)
        if len(seed) != SEED_SIZE:
            raise UsageError(f"random_bytes(32) returned {len(seed)} bytes")
        return cls(name, seed, alg)

"""C2SP signed-note (c2sp.org/signed-note): parse, serialize, sign and verify.

A signed note is text ending in a newline, a blank line, then one or more signature lines
``— <key name> base64(4-byte key ID || signature)``. Parsing is byte-exact: for every accepted
input, ``Note.from_bytes(data).to_bytes() == data`` (base64 must therefore be canonical).

Verification follows signed-note "Signatures": signatures from unknown keys (no match on
both name and key ID) are ignored; a signature from a known key must verify, otherwise the
whole note is rejected; a note with no verified signature from a known key is rejected.
The result is returned as a ``NoteVerification``; ``open_note`` is the raising wrapper.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.errors import FormatError, SignatureError, UsageError
from ledger.keys import (
    ALG_ED25519,
    KEY_ID_SIZE,
    SigningKey,
    VerifierKey,
    check_key_name,
    decode_base64,
    encode_base64,
)
from ledger.limits import DEFAULT_LIMITS, Limits

SIGNATURE_PREFIX = "\u2014 "
"""signed-note "Format": em dash (U+2014) then space (U+0020) starts each signature line."""

# signed-note "Format": no ASCII control characters (below U+0020) other than newline.
_CONTROL_BYTES = re.compile(rb"[\x00-\x09\x0b-\x1f]")
_CONTROL_CHARS = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a note text (signed-note "Format"), or None if it can."""
    if not text.endswith("\n"):
        return "note text must end with a newline"
    if _CONTROL_CHARS.search(text):
        return "note text contains an ASCII control character other than newline"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "note text is not valid Unicode (lone surrogate)"
    return None


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the signature bytes after the ID."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        try:
            check_key_name(self.name, None)
        except FormatError as exc:
            raise UsageError(str(exc)) from exc
        if len(self.key_id) != KEY_ID_SIZE:
            raise UsageError(f"key ID must be 4 bytes, got {len(self.key_id)}")
        if not self.signature:
            raise UsageError("signature bytes are empty")

    def to_line(self) -> str:
        """``— name base64(key ID || signature)\\n`` (signed-note "Signatures")."""
        return f"{SIGNATURE_PREFIX}{self.name} {encode_base64(self.key_id + self.signature)}\n"

    @classmethod
    def from_line(cls, line: str, limits: Limits = DEFAULT_LIMITS) -> NoteSignature:
        """Parse one signature line without its newline; FormatError if malformed."""
        if not line.startswith(SIGNATURE_PREFIX):
            raise FormatError("signature line does not start with an em dash and a space")
        name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not sep:
            raise FormatError("signature line has no space between key name and signature")
        check_key_name(name, limits)
        raw = decode_base64(b64, f"signature of {name!r}")
        # signed-note "Format": base64 of 4+n bytes, key ID first; n >= 1.
        if len(raw) <= KEY_ID_SIZE:
            raise FormatError(f"signature of {name!r} is shorter than 5 bytes")
        return cls(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


@dataclass(frozen=True)
class Note:
    """A signed note: ``text`` (with its final newline) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        problem = _text_problem(self.text)
        if problem:
            raise UsageError(problem)
        if not self.signatures:
            raise UsageError("a signed note needs at least one signature")

    def to_bytes(self) -> bytes:
        """signed-note "Format": text, blank line, signature lines."""
        lines = "".join(sig.to_line() for sig in self.signatures)
        return (self.text + "\n" + lines).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Note:
        """Parse a signed note; FormatError on anything malformed or over a bound."""
        if len(data) > limits.max_note_bytes:
            raise FormatError(f"note is {len(data)} bytes, limit {limits.max_note_bytes}")
        # The text is separated from the signatures by the last empty line.
        split = data.rfind(b"\n\n")
        if split < 0:
            raise FormatError("note has no blank line before its signatures")
        text_bytes, block = data[: split + 1], data[split + 2 :]
        if not block.endswith(b"\n"):
            raise FormatError("note does not end with a newline-terminated signature line")
        count = block.count(b"\n")
        if count > limits.max_note_signatures:
            raise FormatError(f"note has {count} signatures, limit {limits.max_note_signatures}")
        if _CONTROL_BYTES.search(data):
            raise FormatError("note contains an ASCII control character other than newline")
        try:
            text = text_bytes.decode("utf-8")
            lines = block.decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError as exc:
            raise FormatError("note is not valid UTF-8") from exc
        return cls(text, tuple(NoteSignature.from_line(line, limits) for line in lines))

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        """This note with the signature lines of ``extra`` not already present appended."""
        sigs = list(self.signatures)
        for sig in extra:
            if sig not in sigs:
                sigs.append(sig)
        return Note(self.text, tuple(sigs))


def signature_for(text: str, key: SigningKey) -> NoteSignature:
    """An Ed25519 (type 0x01) signature line over ``text`` (signed-note "Ed25519 signatures")."""
    if key.alg != ALG_ED25519:
        raise UsageError(f"key {key.name} is type {key.alg:#04x}; use cosignature.cosign")
    problem = _text_problem(text)
    if problem:
        raise UsageError(problem)
    return NoteSignature(key.name, key.key_id, key.sign(text.encode("utf-8")))


def sign(note_text: str, keys: Sequence[SigningKey]) -> bytes:
    """The signed note of ``note_text`` with one signature per distinct key, in order."""
    distinct = list({key.verifier.key_hash: key for key in keys}.values())
    sigs = tuple(signature_for(note_text, key) for key in distinct)
    return Note(note_text, sigs).to_bytes()


def index_keys(keys: Iterable[VerifierKey], alg: int) -> dict[tuple[str, bytes], VerifierKey]:
    """Known keys by (name, key ID): the tuple that identifies a key (signed-note).

    Two different keys with the same name and ID make the trust policy ambiguous: that is
    a configuration bug (UsageError), never resolved by picking one.
    """
    known: dict[tuple[str, bytes], VerifierKey] = {}
    for key in keys:
        if key.alg != alg:
            raise UsageError(f"key {key.name} is type {key.alg:#04x}, expected {alg:#04x}")
        slot = (key.name, key.key_id)
        if known.setdefault(slot, key) != key:
            raise UsageError(
                f"two trusted keys share name and key ID {key.name}+{key.key_id.hex()}"
            )
    return known


def match_signatures(
    note: Note, keys: Iterable[VerifierKey], alg: int
) -> tuple[list[tuple[VerifierKey, NoteSignature]], int]:
    """Pair each signature line with its known key; returns (pairs, count of unknown lines).

    Identical repeated lines from one key are paired once: they need not be verified twice.
    """
    known = index_keys(keys, alg)
    pairs: list[tuple[VerifierKey, NoteSignature]] = []
    seen: set[NoteSignature] = set()
    unknown = 0
    for sig in note.signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            unknown += 1  # signed-note: MUST ignore signatures from unknown keys
        elif sig not in seen:
            seen.add(sig)
            pairs.append((key, sig))
    return pairs, unknown


@dataclass(frozen=True)
class NoteVerification:
    """Which known keys signed a note. ``verified`` holds distinct keys, in signing order."""

    note: Note
    verified: tuple[VerifierKey, ...]
    unknown: int

    @property
    def key_hashes(self) -> frozenset[bytes]:
        return frozenset(key.key_hash for key in self.verified)

    @property
    def ok(self) -> bool:
        """signed-note: at least one signature from a known key verified."""
        return bool(self.verified)


def verify_note(note: Note, keys: Iterable[VerifierKey]) -> NoteVerification:
    """Verify every signature line of a known Ed25519 (type 0x01) key.

    Raises SignatureError if any of them fails (signed-note: a client may reject the
    whole note; we always do). Having no verified key is *not* an error here: check
    ``ok`` or use ``open_note``.
    """
    pairs, unknown = match_signatures(note, keys, ALG_ED25519)
    message = note.text.encode("utf-8")
    verified: dict[bytes, VerifierKey] = {}
    for key, sig in pairs:
        if not key.verify(message, sig.signature):
            raise SignatureError(
                f"invalid signature from trusted key {key.name}+{key.key_id.hex()}"
            )
        verified.setdefault(key.key_hash, key)
    return NoteVerification(note, tuple(verified.values()), unknown)


def open_note(
    data: bytes, keys: Iterable[VerifierKey], limits: Limits = DEFAULT_LIMITS
) -> NoteVerification:
    """Parse and verify; SignatureError unless at least one known key signed validly."""
    result = verify_note(Note.from_bytes(data, limits), keys)
    if not result.ok:
        raise SignatureError(
            f"note has no valid signature from a trusted key ({result.unknown} from unknown keys)"
        )
    return result

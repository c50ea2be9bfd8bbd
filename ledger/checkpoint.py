"""C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint) and validator-quorum finality.

A checkpoint is the text of a signed note: origin line, tree size line (ASCII decimal, no
leading zeros), root hash line (base64 of the 32-byte RFC 6962/9162 root). The spec allows
opaque extension lines; this ledger never writes them and refuses them on input (DESIGN.md).

A checkpoint is *final* when at least ``threshold`` distinct validators of the current set
signed it (Ed25519 note signatures, type 0x01). ``check_checkpoint`` returns a result object
(threshold, signed, unsigned) like python-tuf's; ``verify_final`` is the raising wrapper.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import FormatError, SignatureError, UsageError, VerificationError
from ledger.keys import ALG_ED25519, SigningKey, VerifierKey, decode_base64, encode_base64
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.note import Note, NoteSignature, sign, signature_for, verify_note

ROOT_HASH_SIZE = 32
MAX_TREE_SIZE = 2**64 - 1
"""Tree sizes are uint64, as in RFC 9162 and every tlog implementation."""

# tlog-checkpoint "Note text" 2: ASCII decimal, no leading zeroes unless the size is 0.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_ORIGIN_CONTROLS = re.compile(r"[\x00-\x1f]")


def parse_decimal(text: str, what: str) -> int:
    """A uint64 in canonical ASCII decimal (no sign, no leading zeros); FormatError if not."""
    if not _DECIMAL.fullmatch(text):
        raise FormatError(f"{what} {text[:32]!r} is not a decimal without leading zeros")
    value = int(text)
    if value > MAX_TREE_SIZE:
        raise FormatError(f"{what} {value} does not fit in 64 bits")
    return value


def _origin_problem(origin: str, limits: Limits | None) -> str | None:
    # tlog-checkpoint "Note text" 1: non-empty; clients MUST NOT assume URL syntax, so
    # spaces and '+' are accepted. Control characters could never be in a note text.
    if not origin:
        return "checkpoint origin is empty"
    if _ORIGIN_CONTROLS.search(origin):
        return "checkpoint origin contains a control character"
    if any("\ud800" <= ch <= "\udfff" for ch in origin):
        return "checkpoint origin is not valid Unicode text"
    if limits and len(origin.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        return f"checkpoint origin is longer than {limits.max_name_bytes} bytes"
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: log origin, tree size and RFC 9162 root hash."""

    origin: str
    size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        problem = _origin_problem(self.origin, None)  # the length bound is for input only
        if problem:
            raise UsageError(problem)
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise UsageError(f"tree size {self.size} is not a uint64")
        if len(self.root_hash) != ROOT_HASH_SIZE:
            raise UsageError(f"root hash must be 32 bytes, got {len(self.root_hash)}")

    def to_text(self) -> str:
        """The note text: three newline-terminated lines, no extension lines."""
        return f"{self.origin}\n{self.size}\n{encode_base64(self.root_hash)}\n"

    @classmethod
    def from_text(cls, text: str, limits: Limits = DEFAULT_LIMITS) -> Checkpoint:
        """Parse a checkpoint note text; FormatError on anything else (extension lines too)."""
        if len(text) > limits.max_name_bytes + 96:  # origin + 20 digits + 44 base64 + 3 "\n"
            raise FormatError("checkpoint text is too long")
        if not text.endswith("\n"):
            raise FormatError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError("checkpoint needs origin, tree size and root hash lines")
        if len(lines) > 3:
            raise FormatError("checkpoint has extension lines; this ledger accepts none")
        origin, size_line, root_line = lines
        problem = _origin_problem(origin, limits)
        if problem:
            raise FormatError(problem)
        size = parse_decimal(size_line, "tree size")
        root = decode_base64(root_line, "root hash")
        if len(root) != ROOT_HASH_SIZE:
            raise FormatError(f"root hash is {len(root)} bytes, expected 32")
        return cls(origin, size, root)


def max_faulty(n: int) -> int:
    """f: the most Byzantine validators a set of n tolerates (n >= 3f + 1)."""
    if n < 1:
        raise UsageError("a validator set needs at least one validator")
    return (n - 1) // 3


def quorum_threshold(n: int) -> int:
    """Signatures that make a checkpoint final: more than two thirds of n validators.

    Equals 2f + 1 when n = 3f + 1. For other n, 2f + 1 would let two quorums intersect
    in only f validators (n = 5: 3 + 3 - 5 = 1 = f), so the Tendermint rule
    floor(2n / 3) + 1 is used; it is still reachable with f faulty validators.
    """
    max_faulty(n)  # validates n
    return 2 * n // 3 + 1


def checkpoint_signature(checkpoint: Checkpoint, key: SigningKey) -> NoteSignature:
    """One validator's signature line over the checkpoint text."""
    return signature_for(checkpoint.to_text(), key)


def sign_checkpoint(checkpoint: Checkpoint, keys: Sequence[SigningKey]) -> bytes:
    """The checkpoint as a signed note, one signature per distinct key."""
    return sign(checkpoint.to_text(), keys)


def checkpoint_note(checkpoint: Checkpoint, signatures: Sequence[NoteSignature]) -> bytes:
    """The checkpoint as a signed note with signature lines collected from validators."""
    return Note(checkpoint.to_text(), tuple(signatures)).to_bytes()


@dataclass(frozen=True)
class CheckpointVerification:
    """Quorum result: which distinct validators signed, which did not, and the threshold."""

    checkpoint: Checkpoint
    threshold: int
    signed: tuple[VerifierKey, ...]
    unsigned: tuple[VerifierKey, ...]

    @property
    def verified(self) -> bool:
        return len(self.signed) >= self.threshold

    def describe(self) -> str:
        total = len(self.signed) + len(self.unsigned)
        return f"{len(self.signed)} of {total} signatures, need {self.threshold}"


def _distinct_validators(validators: Sequence[VerifierKey], threshold: int) -> list[VerifierKey]:
    """The policy, deduplicated; fails closed on an empty set or an impossible threshold."""
    distinct = list({key.key_hash: key for key in validators}.values())
    if not distinct:
        raise UsageError("empty validator set: no checkpoint can be final")
    if threshold <= 0:
        raise UsageError(f"threshold must be at least 1, got {threshold}")
    if threshold > len(distinct):
        raise UsageError(f"threshold {threshold} exceeds the {len(distinct)} validators")
    for key in distinct:
        if key.alg != ALG_ED25519:
            raise UsageError(f"validator {key.name} is type {key.alg:#04x}, expected 0x01")
    return distinct


def check_checkpoint(
    note_bytes: bytes,
    validators: Sequence[VerifierKey],
    threshold: int,
    *,
    origin: str,
    limits: Limits = DEFAULT_LIMITS,
) -> CheckpointVerification:
    """Parse a signed checkpoint and count distinct validators with valid signatures.

    Unknown keys are ignored, repeated signatures of one key count once. Raises FormatError
    if malformed, VerificationError if the origin is not ``origin``, SignatureError if a
    validator's signature is invalid. Does not raise when the threshold is missed.
    """
    distinct = _distinct_validators(validators, threshold)
    note = Note.from_bytes(note_bytes, limits)
    checkpoint = Checkpoint.from_text(note.text, limits)
    if checkpoint.origin != origin:
        raise VerificationError(f"checkpoint origin {checkpoint.origin!r}, expected {origin!r}")
    signed = verify_note(note, distinct).key_hashes
    return CheckpointVerification(
        checkpoint,
        threshold,
        tuple(key for key in distinct if key.key_hash in signed),
        tuple(key for key in distinct if key.key_hash not in signed),
    )


def verify_final(
    note_bytes: bytes,
    validators: Sequence[VerifierKey],
    threshold: int,
    *,
    origin: str,
    limits: Limits = DEFAULT_LIMITS,
) -> Checkpoint:
    """The checkpoint if at least ``threshold`` distinct validators signed it, else raise."""
    result = check_checkpoint(note_bytes, validators, threshold, origin=origin, limits=limits)
    if not result.verified:
        cp = result.checkpoint
        raise SignatureError(f"checkpoint {cp.origin} at size {cp.size}: {result.describe()}")
    return result.checkpoint

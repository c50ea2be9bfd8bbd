"""C2SP tlog-proof@v1 files (c2sp.org/tlog-proof): parse and serialize, byte-exact.

Grammar ("Format"), lines separated by newlines:

    c2sp.org/tlog-proof@v1
    [extra <base64 opaque data>]         optional, omitted when there is no extra data
    index <decimal, no leading zeros>
    <base64 SHA-256 hash>                zero or more, leaf's sibling up to the root's child
    <empty line>
    <signed checkpoint note, verbatim>   c2sp.org/tlog-checkpoint with its signature lines

This module does no Merkle math and checks no signature: the caller verifies the
checkpoint (``checkpoint.verify_final``) and the inclusion proof (``merkle``). Parsing does
check that the embedded note is a well-formed checkpoint and that ``index < size``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.checkpoint import MAX_TREE_SIZE, Checkpoint, parse_decimal
from ledger.errors import FormatError, UsageError
from ledger.keys import decode_base64, encode_base64
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.note import Note

HEADER = "c2sp.org/tlog-proof@v1"
HASH_SIZE = 32
_EXTRA = b"extra "
_INDEX = b"index "


def _next_line(data: bytes, pos: int) -> tuple[bytes, int]:
    """The line starting at ``pos`` (without its newline) and the position after it."""
    end = data.find(b"\n", pos)
    if end < 0:
        raise FormatError("tlog-proof ends before the checkpoint")
    return data[pos:end], end + 1


def _ascii(line: bytes, what: str) -> str:
    try:
        return line.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what} is not ASCII") from exc


@dataclass(frozen=True)
class TlogProof:
    """An offline-verifiable inclusion proof: leaf index, proof hashes, signed checkpoint."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint_note: bytes
    extra: bytes | None = None
    """Opaque, unauthenticated application data (tlog-proof: MUST NOT be trusted)."""

    def __post_init__(self) -> None:
        if not 0 <= self.index <= MAX_TREE_SIZE:
            raise UsageError(f"index {self.index} is not a uint64")
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise UsageError("every proof hash must be 32 bytes")
        if self.extra is not None and not self.extra:
            raise UsageError("extra data must be non-empty, or None to omit the line")
        if not self.checkpoint_note.endswith(b"\n") or b"\n\n" not in self.checkpoint_note:
            raise UsageError("checkpoint_note is not a signed note")

    def to_bytes(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {encode_base64(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(encode_base64(h) for h in self.hashes)
        lines.append("")  # the empty line before the checkpoint
        return ("\n".join(lines) + "\n").encode("ascii") + self.checkpoint_note

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> TlogProof:
        """Parse a tlog-proof file; FormatError on anything off or over a bound."""
        if len(data) > limits.max_receipt_bytes:
            raise FormatError(f"tlog-proof is {len(data)} bytes, limit {limits.max_receipt_bytes}")
        line, pos = _next_line(data, 0)
        if line != HEADER.encode("ascii"):
            raise FormatError(f"tlog-proof does not start with {HEADER}")
        extra, index, pos = _parse_extra_and_index(data, pos)
        hashes, pos = _parse_hashes(data, pos, limits)
        note = data[pos:]
        checkpoint = Checkpoint.from_text(Note.from_bytes(note, limits).text, limits)
        if index >= checkpoint.size:
            raise FormatError(f"index {index} is not below the tree size {checkpoint.size}")
        return cls(index, hashes, note, extra)


def _parse_extra_and_index(data: bytes, pos: int) -> tuple[bytes | None, int, int]:
    """The optional ``extra`` line, then the mandatory ``index`` line."""
    line, pos = _next_line(data, pos)
    extra = None
    if line.startswith(_EXTRA):
        extra = decode_base64(_ascii(line[len(_EXTRA) :], "extra data"), "extra data")
        if not extra:
            raise FormatError("extra line is empty (omit the line when there is no extra data)")
        line, pos = _next_line(data, pos)
    if not line.startswith(_INDEX):
        raise FormatError("tlog-proof has no 'index N' line after its header")
    index = parse_decimal(_ascii(line[len(_INDEX) :], "index"), "index")
    return extra, index, pos


def _parse_hashes(data: bytes, pos: int, limits: Limits) -> tuple[tuple[bytes, ...], int]:
    """Non-empty hash lines up to the empty line that precedes the checkpoint."""
    hashes: list[bytes] = []
    while True:
        line, pos = _next_line(data, pos)
        if not line:
            return tuple(hashes), pos
        if len(hashes) >= limits.max_proof_hashes:
            raise FormatError(f"tlog-proof has more than {limits.max_proof_hashes} hashes")
        raw = decode_base64(_ascii(line, "proof hash"), "proof hash")
        if len(raw) != HASH_SIZE:
            raise FormatError(f"proof hash is {len(raw)} bytes, expected 32")
        hashes.append(raw)

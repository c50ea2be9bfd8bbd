"""C2SP tlog-witness (c2sp.org/tlog-witness): the add-checkpoint exchange, as a pure core.

Wire format of ``POST <prefix>/add-checkpoint`` ("add-checkpoint"):

    old <size>                  ASCII decimal, no leading zeros
    <base64 hash>               0..63 consistency proof lines (RFC 6962 2.1.2 = RFC 9162 2.1.4)
    <empty line>
    <signed checkpoint note>    may carry several signatures

Answers: 200 with cosignature lines; 400 malformed; 403 no trusted quorum signed; 404
unknown origin; 409 (body ``<size>\\n``, type ``text/x.tlog.size``) when the old size is not
the witness's latest, or the same size has another root; 422 when the proof fails.

``decide`` holds every check, in the spec's order, over the witness's state passed in
(nothing here reads a clock, a file or a socket). A validly signed checkpoint that
contradicts one the witness has cosigned is returned with ``Evidence`` so the caller can
raise the split-view alarm (``ledger.splitview``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from ledger import merkle
from ledger.checkpoint import Checkpoint, check_checkpoint, parse_decimal
from ledger.cosignature import cosign, verify_cosignature
from ledger.errors import FormatError, ProofError, SignatureError, VerificationError
from ledger.keys import SigningKey, VerifierKey, decode_base64, encode_base64
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.note import SIGNATURE_PREFIX, Note, NoteSignature

MAX_PROOF_LINES = 63
"""tlog-witness "add-checkpoint": a client MUST NOT send more than 63 proof lines."""
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD = "old "

OK, BAD_REQUEST, FORBIDDEN, NOT_FOUND, CONFLICT, UNPROCESSABLE = 200, 400, 403, 404, 409, 422


@dataclass(frozen=True)
class AddCheckpoint:
    """One add-checkpoint request body."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes

    def to_bytes(self) -> bytes:
        lines = [f"{_OLD}{self.old_size}", *(encode_base64(h) for h in self.proof), ""]
        return ("\n".join(lines) + "\n").encode("ascii") + self.note

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> AddCheckpoint:
        """Parse a request body; FormatError (answered 400) on anything malformed."""
        if len(data) > max_request_bytes(limits):
            raise FormatError(f"request is {len(data)} bytes, limit {max_request_bytes(limits)}")
        head, sep, note = data.partition(b"\n\n")
        if not sep:
            raise FormatError("request has no empty line before the checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError as exc:
            raise FormatError("old size and proof lines must be ASCII") from exc
        if not lines[0].startswith(_OLD):
            raise FormatError("request does not start with an 'old <size>' line")
        old = parse_decimal(lines[0][len(_OLD) :], "old size")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise FormatError(f"request has {len(lines) - 1} proof lines, at most 63 allowed")
        proof = tuple(decode_base64(line, "consistency proof line") for line in lines[1:])
        if any(len(h) != merkle.HASH_SIZE for h in proof):
            raise FormatError("every consistency proof line must be a 32-byte hash")
        return cls(old, proof, note)


def max_request_bytes(limits: Limits) -> int:
    """Largest body worth reading: the old-size line, 63 proof lines and a note."""
    return 32 + MAX_PROOF_LINES * 45 + limits.max_note_bytes


def cosignature_lines(signatures: tuple[NoteSignature, ...]) -> bytes:
    """A 200 response body: one signature line per cosignature."""
    return "".join(sig.to_line() for sig in signatures).encode("utf-8")


def parse_cosignature_lines(body: bytes, limits: Limits = DEFAULT_LIMITS) -> list[NoteSignature]:
    """The signature lines of a 200 response; FormatError if anything else is in it."""
    if len(body) > limits.max_note_bytes:
        raise FormatError(f"witness response is {len(body)} bytes, over the note limit")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError("witness response is not UTF-8") from exc
    if not text.endswith("\n") or not text.startswith(SIGNATURE_PREFIX):
        raise FormatError("witness response is not newline-terminated signature lines")
    lines = text[:-1].split("\n")
    if len(lines) > limits.max_note_signatures:
        raise FormatError(f"witness response has {len(lines)} lines, over the limit")
    return [NoteSignature.from_line(line, limits) for line in lines]


def parse_size_body(body: bytes) -> int:
    """The witness's latest size from a 409 body (``<decimal>\\n``)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FormatError("409 body is not ASCII") from exc
    if not text.endswith("\n"):
        raise FormatError("409 body must be a decimal size and a newline")
    return parse_decimal(text[:-1], "witness latest size")


# --- the witness's decision ------------------------------------------------------------


@dataclass(frozen=True)
class LogTrust:
    """The one log a witness follows: its origin and the validator quorum that signs it."""

    origin: str
    validators: tuple[VerifierKey, ...]
    threshold: int


@dataclass(frozen=True)
class Cosigned:
    """The witness's latest cosigned checkpoint for a log: what it must stay consistent with."""

    checkpoint: Checkpoint
    note: bytes


@dataclass(frozen=True)
class Evidence:
    """Two quorum-signed checkpoints the witness cannot both accept.

    ``kind`` is ``same-size`` (two roots for one size: proof of a split view by itself) or
    ``bad-consistency-proof`` (the log's proof from ``seen`` to ``shown`` fails).
    """

    kind: str
    seen: bytes
    shown: bytes
    proof: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What to answer. ``accept`` is the new state to persist (before answering 200)."""

    status: int
    body: bytes
    reason: str
    accept: Cosigned | None = None
    evidence: Evidence | None = None

    @property
    def content_type(self) -> str:
        return SIZE_CONTENT_TYPE if self.status == CONFLICT and self.body else "text/plain"


SeenAt = Callable[[int], bytes | None]
"""The signed note the witness cosigned at a tree size, if it kept one."""


def _refuse(status: int, reason: str, evidence: Evidence | None = None) -> Decision:
    return Decision(status, (reason + "\n").encode(), reason, evidence=evidence)


def _conflict(latest: int, reason: str, evidence: Evidence | None = None) -> Decision:
    return Decision(CONFLICT, f"{latest}\n".encode(), reason, evidence=evidence)


def _signed_checkpoint(note: bytes, trust: LogTrust, limits: Limits) -> Checkpoint | Decision:
    """tlog-witness: 404 for an unknown origin, 403 unless trusted keys signed (a quorum)."""
    try:
        text = Note.from_bytes(note, limits).text
        checkpoint = Checkpoint.from_text(text, limits)
    except FormatError as exc:
        return _refuse(BAD_REQUEST, f"malformed checkpoint: {exc}")
    if checkpoint.origin != trust.origin:
        return _refuse(NOT_FOUND, f"unknown log {checkpoint.origin!r}")
    try:
        result = check_checkpoint(note, trust.validators, trust.threshold,
                                  origin=trust.origin, limits=limits)
    except VerificationError as exc:
        return _refuse(FORBIDDEN, f"checkpoint signature check failed: {exc}")
    if not result.verified:
        return _refuse(FORBIDDEN, f"checkpoint is not final: {result.describe()}")
    return checkpoint


def _same_size_conflict(checkpoint: Checkpoint, note: bytes, seen: bytes | None,
                        limits: Limits) -> Evidence | None:
    if seen is None:
        return None
    old = Checkpoint.from_text(Note.from_bytes(seen, limits).text, limits)
    if hmac.compare_digest(old.root_hash, checkpoint.root_hash):
        return None
    return Evidence("same-size", seen, note)


def decide(
    body: bytes,
    trust: LogTrust,
    latest: Cosigned | None,
    seen_at: SeenAt,
    key: SigningKey,
    now: int,
    limits: Limits = DEFAULT_LIMITS,
) -> Decision:
    """Every tlog-witness check of one add-checkpoint request, in the spec's order."""
    try:
        request = AddCheckpoint.from_bytes(body, limits)
    except FormatError as exc:
        return _refuse(BAD_REQUEST, f"malformed request: {exc}")
    checked = _signed_checkpoint(request.note, trust, limits)
    if isinstance(checked, Decision):
        return checked
    checkpoint = checked
    if request.old_size > checkpoint.size:
        return _refuse(BAD_REQUEST, f"old size {request.old_size} is above the checkpoint"
                                    f" size {checkpoint.size}")
    latest_size = 0 if latest is None else latest.checkpoint.size
    # A checkpoint for a size already cosigned must carry the same root, whatever the old
    # size says: two roots for one size is a split view (tlog-witness "409 Conflict").
    evidence = _same_size_conflict(checkpoint, request.note, seen_at(checkpoint.size), limits)
    if evidence is not None:
        return _conflict(latest_size, f"split view: another root for size {checkpoint.size}",
                         evidence)
    if request.old_size != latest_size:
        return _conflict(latest_size, f"old size {request.old_size} is not the latest"
                                      f" cosigned size {latest_size}")
    if latest is not None and request.old_size:
        problem = _consistency_problem(latest.checkpoint, checkpoint, request.proof)
        if problem:
            return _refuse(UNPROCESSABLE, problem,
                           Evidence("bad-consistency-proof", latest.note, request.note,
                                    request.proof))
    elif request.proof:
        return _refuse(UNPROCESSABLE, "the proof must be empty when the old size is 0")
    signature = cosign(checkpoint, key, now)
    return Decision(OK, cosignature_lines((signature,)), "cosigned",
                    accept=Cosigned(checkpoint, request.note))


def _consistency_problem(old: Checkpoint, new: Checkpoint, proof: tuple[bytes, ...]
                         ) -> str | None:
    """RFC 9162 2.1.4.2 from the witness's latest cosigned checkpoint to ``new``."""
    try:  # equal sizes: empty proof and the same root (merkle handles that case too)
        merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, list(proof))
    except ProofError as exc:
        return f"consistency proof from size {old.size} to {new.size} does not verify: {exc}"
    return None


def verify_response(checkpoint: Checkpoint, body: bytes, witness: VerifierKey,
                    limits: Limits = DEFAULT_LIMITS) -> list[NoteSignature]:
    """The cosignature lines of ``witness`` in a 200 body, each checked; others ignored.

    tlog-witness: the client MUST ignore cosignatures from unknown keys. SignatureError if
    the known witness's line does not verify or if it sent none.
    """
    mine = [sig for sig in parse_cosignature_lines(body, limits)
            if sig.name == witness.name and hmac.compare_digest(sig.key_id, witness.key_id)]
    if not mine:
        raise SignatureError(f"witness {witness.name} answered without its cosignature")
    for sig in mine:
        verify_cosignature(checkpoint, sig, witness)
    return mine

"""Split-view evidence: two quorum-signed checkpoints of one log that cannot both be true.

A witness writes this file when a log shows it a validly signed checkpoint that contradicts
one it cosigned (ledger/witness.py). Anyone can check it offline with the genesis alone:

- ``same-size``: both notes are final (2f+1 validators) for the same origin and tree size
  with different roots. That proves the split view by itself; the validators who signed
  both are named (in a BFT log at least f+1 of them must have, so they are accountable).
- ``bad-consistency-proof``: both notes are final, the newer is larger, and the proof the
  log gave fails. That is an alarm, not a proof: only the log can show a good proof, so
  the verdict says the evidence is not conclusive.

File format (UTF-8 JSON, our own, versioned like the other formats in ledger/):
    {"format": "shadowledger/split-view-evidence/v1", "kind": KIND, "origin": ORIGIN,
     "detected_at": UNIX_SECONDS, "witness": VKEY, "seen": NOTE, "shown": NOTE,
     "proof": [BASE64, ...]}
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.errors import FormatError, ProofError, VerificationError
from ledger.genesis import TrustRoot
from ledger.keys import decode_base64, encode_base64
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.note import Note
from ledger.receipts import final_checkpoint
from ledger.witness import Evidence

FORMAT = "shadowledger/split-view-evidence/v1"
KINDS = ("same-size", "bad-consistency-proof")


@dataclass(frozen=True)
class EvidenceFile:
    evidence: Evidence
    origin: str
    detected_at: int
    witness: str
    """The vkey of the witness that raised the alarm (informative: the notes prove it)."""

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "kind": self.evidence.kind,
            "origin": self.origin,
            "detected_at": self.detected_at,
            "witness": self.witness,
            "seen": self.evidence.seen.decode("utf-8"),
            "shown": self.evidence.shown.decode("utf-8"),
            "proof": [encode_base64(h) for h in self.evidence.proof],
        }
        return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> EvidenceFile:
        if len(data) > 4 * limits.max_note_bytes:
            raise FormatError(f"evidence file is {len(data)} bytes, over the limit")
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise FormatError(f"evidence format is {doc.get('format')!r}, want {FORMAT!r}")
            kind = str(doc["kind"])
            if kind not in KINDS:
                raise FormatError(f"unknown evidence kind {kind!r}")
            proof = tuple(decode_base64(str(h), "proof hash") for h in doc.get("proof", []))
            evidence = Evidence(kind, str(doc["seen"]).encode(), str(doc["shown"]).encode(),
                                proof)
            return cls(evidence, str(doc["origin"]), int(doc["detected_at"]),
                       str(doc.get("witness", "")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"evidence is not a valid {FORMAT} document: {exc}") from exc


@dataclass(frozen=True)
class SplitViewVerdict:
    kind: str
    seen: Checkpoint
    shown: Checkpoint
    conclusive: bool
    double_signers: tuple[str, ...]
    """Validators whose signatures are on both checkpoints."""

    def describe(self) -> str:
        if self.conclusive:
            return (f"split view of {self.seen.origin}: two final checkpoints for size"
                    f" {self.seen.size} with different roots, both signed by"
                    f" {', '.join(self.double_signers) or 'no common validator'}")
        return (f"{self.seen.origin}: the log's proof from size {self.seen.size} to"
                f" {self.shown.size} does not verify; not conclusive offline (only a split"
                " view at one size is)")


def _signer_names(note: bytes, trust: TrustRoot, limits: Limits) -> set[str]:
    _, signers = final_checkpoint(note, trust, limits)
    return set(signers)


def verify_split_view(data: bytes, trust: TrustRoot, limits: Limits = DEFAULT_LIMITS
                      ) -> SplitViewVerdict:
    """Check an evidence file against the trust root; VerificationError if it proves nothing."""
    doc = EvidenceFile.from_bytes(data, limits)
    ev = doc.evidence
    seen, _ = final_checkpoint(ev.seen, trust, limits)
    shown, _ = final_checkpoint(ev.shown, trust, limits)
    if seen.origin != shown.origin:
        raise VerificationError(f"checkpoints are of two logs: {seen.origin}, {shown.origin}")
    both = tuple(sorted(_signer_names(ev.seen, trust, limits)
                        & _signer_names(ev.shown, trust, limits)))
    if seen.size == shown.size:
        if hmac.compare_digest(seen.root_hash, shown.root_hash):
            raise VerificationError(f"both checkpoints agree on size {seen.size}: no split view")
        return SplitViewVerdict("same-size", seen, shown, True, both)
    old, new = (seen, shown) if seen.size < shown.size else (shown, seen)
    try:
        merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash,
                                  list(ev.proof))
    except ProofError:
        return SplitViewVerdict(ev.kind, old, new, False, both)
    raise VerificationError(f"the proof shows size {new.size} extends size {old.size}:"
                            " the checkpoints are consistent")


def note_origin(note: bytes, limits: Limits = DEFAULT_LIMITS) -> str:
    """The origin line of a signed checkpoint note (for naming evidence files)."""
    return Checkpoint.from_text(Note.from_bytes(note, limits).text, limits).origin

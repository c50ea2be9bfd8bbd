"""Every bound on untrusted input, in one place (STYLE.md rule 6)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds checked before parsing. Defaults suit production; tests may tighten them."""

    max_record_bytes: int = 64 * 1024
    """An envelope (body + signer + signature), as submitted and as committed."""
    max_note_bytes: int = 64 * 1024
    """A signed note (checkpoint with signatures, cosigned checkpoint)."""
    max_note_signatures: int = 256
    """Signature lines in one note; more is refused before any is verified."""
    max_proof_hashes: int = 128
    """Hashes in one inclusion or consistency proof (2 * 64 is the RFC 9162 worst case)."""
    max_name_bytes: int = 255
    """A key name or checkpoint origin."""
    max_receipt_bytes: int = 256 * 1024
    """A tlog-proof@v1 file."""
    max_block_records: int = 10_000
    """Envelopes in one block."""
    max_batch_leaves: int = 100_000
    """Leaves appended to the Merkle store in one write transaction."""


DEFAULT_LIMITS = Limits()

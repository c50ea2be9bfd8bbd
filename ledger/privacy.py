"""Keyed pseudonyms and salted commitments: how personal data stays off the ledger."""

from __future__ import annotations

import hashlib
import hmac

SALT_MIN = 16


def pseudonym(agency_key: bytes, subject_id: str) -> bytes:
    """HMAC-SHA-256 of a subject identifier under a key only the agency holds.

    Without the key, the pseudonym cannot be linked to the person (no dictionary attack
    over national identifier numbers); with it, the agency can find its subjects' records.
    """
    if len(agency_key) < 32:
        raise ValueError("a pseudonym key must be at least 32 bytes")
    return hmac.new(agency_key, subject_id.encode(), hashlib.sha256).digest()


def commitment(salt: bytes, payload: bytes) -> bytes:
    """SHA-256(salt || payload): binds the payload; erasing the salt unlinks it."""
    if len(salt) < SALT_MIN:
        raise ValueError(f"a commitment salt must be at least {SALT_MIN} bytes")
    return hashlib.sha256(salt + payload).digest()


def opens(commit: bytes, salt: bytes, payload: bytes) -> bool:
    """Whether ``payload`` with ``salt`` opens ``commit``."""
    return hmac.compare_digest(commitment(salt, payload), commit)

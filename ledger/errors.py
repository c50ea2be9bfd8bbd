"""Errors by fault (STYLE.md rule 4).

- ``VerificationError`` and subclasses: untrusted input (from a peer, a client or a file)
  failed a check. The input is at fault; the message says what was wrong.
- ``StorageError`` and subclasses: infrastructure failed or the on-disk state is not
  trustworthy. The operator is at fault or must act.
- ``UsageError``: the caller misused the API (a bug in the calling code).
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error raised on purpose by the ledger core."""


class VerificationError(LedgerError):
    """Untrusted input failed a check (bad bytes, bad signature, bad proof, no quorum)."""


class FormatError(VerificationError):
    """Bytes or text do not parse as the expected format, or exceed a bound."""


class ProofError(VerificationError):
    """An inclusion or consistency proof does not verify (RFC 9162 2.1.3.2 / 2.1.4.2)."""


class SignatureError(VerificationError):
    """A signature is invalid, from an unknown key, or a quorum of signatures is missing."""


class ChainError(VerificationError):
    """A block does not link to its predecessor or its header disagrees with its contents."""


class PolicyError(VerificationError):
    """A record breaks the sharing policy at its time: no active agreement covers it, or
    it names an agreement that does not exist or was revoked. It may pass later (once a
    covering agreement is committed), so callers answer FAILED_PRECONDITION."""


class NotPermittedError(PolicyError):
    """The author may never write this record: an auditor writing, or an agency writing
    on behalf of others (callers answer PERMISSION_DENIED)."""


class StorageError(LedgerError):
    """The store cannot be used (I/O failure, full map, wrong layout)."""


class CorruptStoreError(StorageError):
    """The store's contents fail an integrity check; it must not be served."""


class UsageError(LedgerError, ValueError):
    """The API was called with arguments that can never be valid (a caller bug)."""

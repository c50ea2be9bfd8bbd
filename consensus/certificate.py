"""Commit certificates: 2f+1 precommit signatures over one block id (Algorithm 1, line 49).

A certificate stores the common fields once and one (validator key, signature) pair per
signer; each signature is over ``vote_sign_bytes(chain, h, r, PRECOMMIT, block_id)``, so it
is checked offline against a validator set with no other context.

    wire = u8 chain_len || chain_id || >QI32sH (height, round, block_id, count)
           || count * (32-byte key || 64-byte signature)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from consensus.crypto import SignatureCheck, signature_is_valid
from consensus.messages import (
    BLOCK_ID_BYTES,
    KEY_BYTES,
    MAX_CHAIN_ID_BYTES,
    SIGNATURE_BYTES,
    Vote,
    VoteType,
    vote_sign_bytes,
)
from consensus.validators import ValidatorSet
from ledger.errors import FormatError, SignatureError, UsageError

_HEADER = struct.Struct(">QI32sH")
MAX_CERTIFICATE_SIGNATURES = 1024


@dataclass(frozen=True, slots=True)
class CommitSignature:
    validator: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    chain_id: bytes
    height: int
    round: int
    block_id: bytes
    signatures: tuple[CommitSignature, ...]

    @classmethod
    def from_precommits(cls, precommits: Iterable[Vote]) -> CommitCertificate:
        """Bundle precommits that all name the same (chain, height, round, block)."""
        votes = sorted(precommits, key=lambda v: v.validator)
        if not votes:
            raise UsageError("a certificate needs at least one precommit")
        first = votes[0]
        for v in votes:
            same = (v.chain_id, v.height, v.round, v.block_id) == (
                first.chain_id, first.height, first.round, first.block_id,
            )
            if not same or v.vote_type is not VoteType.PRECOMMIT or v.block_id is None:
                raise UsageError("certificate precommits must agree and name a block")
        sigs = tuple(CommitSignature(v.validator, v.signature) for v in votes)
        assert first.block_id is not None
        return cls(first.chain_id, first.height, first.round, first.block_id, sigs)

    def sign_bytes(self) -> bytes:
        return vote_sign_bytes(
            self.chain_id, self.height, self.round, VoteType.PRECOMMIT, self.block_id
        )

    def to_bytes(self) -> bytes:
        header = _HEADER.pack(self.height, self.round, self.block_id, len(self.signatures))
        body = b"".join(s.validator + s.signature for s in self.signatures)
        return bytes([len(self.chain_id)]) + self.chain_id + header + body

    @classmethod
    def from_bytes(cls, data: bytes) -> CommitCertificate:
        if not data or not 1 <= data[0] <= MAX_CHAIN_ID_BYTES:
            raise FormatError("certificate has a bad chain_id prefix")
        chain_id, rest = data[1 : 1 + data[0]], data[1 + data[0] :]
        if len(rest) < _HEADER.size:
            raise FormatError("certificate is truncated")
        height, round_, block_id, count = _HEADER.unpack_from(rest)
        pair = KEY_BYTES + SIGNATURE_BYTES
        if count > MAX_CERTIFICATE_SIGNATURES or len(rest) != _HEADER.size + count * pair:
            raise FormatError("certificate has the wrong length or too many signatures")
        body = rest[_HEADER.size :]
        sigs = tuple(
            CommitSignature(body[i : i + KEY_BYTES], body[i + KEY_BYTES : i + pair])
            for i in range(0, len(body), pair)
        )
        return cls(chain_id, height, round_, block_id, sigs)


@dataclass(frozen=True, slots=True)
class QuorumResult:
    """Outcome of a threshold check (as python-tuf reports one): never raises by itself."""

    threshold: int
    signed_power: int
    signers: frozenset[bytes]
    rejected: frozenset[bytes]

    @property
    def ok(self) -> bool:
        return self.threshold > 0 and self.signed_power >= self.threshold


def certificate_quorum(
    cert: CommitCertificate,
    validators: ValidatorSet,
    chain_id: bytes,
    check: SignatureCheck = signature_is_valid,
) -> QuorumResult:
    """Count the power of distinct known validators whose signature verifies.

    Unknown keys, duplicates and bad signatures add nothing (STYLE.md rule 5).
    """
    message = cert.sign_bytes()
    signers: set[bytes] = set()
    rejected: set[bytes] = set()
    for sig in cert.signatures:
        if sig.validator in signers or validators.power_of(sig.validator) == 0:
            continue
        if check(sig.validator, message, sig.signature):
            signers.add(sig.validator)
        else:
            rejected.add(sig.validator)
    power = sum(validators.power_of(k) for k in signers)
    threshold = validators.quorum if cert.chain_id == chain_id else 0
    return QuorumResult(threshold, power, frozenset(signers), frozenset(rejected))


def check_certificate(
    cert: CommitCertificate,
    validators: ValidatorSet,
    chain_id: bytes,
    check: SignatureCheck = signature_is_valid,
) -> None:
    """Raise ``SignatureError`` unless the certificate carries a quorum of precommits."""
    if len(cert.block_id) != BLOCK_ID_BYTES:
        raise SignatureError("certificate block id has the wrong length")
    result = certificate_quorum(cert, validators, chain_id, check)
    if cert.chain_id != chain_id:
        raise SignatureError("certificate is for another chain")
    if not result.ok:
        raise SignatureError(
            f"certificate has {result.signed_power} of {result.threshold} required power"
        )

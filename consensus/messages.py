"""Signed consensus messages: proposals and votes, with canonical sign bytes.

Sign bytes are a domain-separation line followed by a fixed big-endian ``struct`` layout, so
an auditor can rebuild them from the fields alone. The wire form (``to_bytes``) appends the
signer's 32-byte Ed25519 key and the 64-byte signature to the same fields.

    vote sign bytes     = b"shadowledger/vote/v1\\n"     || chain || >QIBB32s
                          (height, round, type, has_block, block_id or 32 zero bytes)
    proposal sign bytes = b"shadowledger/proposal/v1\\n" || chain || >QIi32s
                          (height, round, valid_round (-1 = none), block_id)
    chain               = u8 length || chain_id bytes (1..64)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ledger.errors import FormatError, UsageError

VOTE_DOMAIN = b"shadowledger/vote/v1\n"
PROPOSAL_DOMAIN = b"shadowledger/proposal/v1\n"
BLOCK_ID_BYTES = 32
KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_CHAIN_ID_BYTES = 64
MAX_ROUND = 2**31 - 1

_VOTE_FIELDS = struct.Struct(">QIBB32s")
_PROPOSAL_FIELDS = struct.Struct(">QIi32s")
_NIL_ID = bytes(BLOCK_ID_BYTES)


class VoteType(enum.IntEnum):
    """Vote kinds of Algorithm 1; values double as the step they are signed in."""

    PREVOTE = 1
    PRECOMMIT = 2


class Step(enum.IntEnum):
    """step_p of Algorithm 1 (line 4); ordered so (height, round, step) compares as signed."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


def _chain_prefix(chain_id: bytes) -> bytes:
    if not 1 <= len(chain_id) <= MAX_CHAIN_ID_BYTES:
        raise UsageError(f"chain_id must be 1..{MAX_CHAIN_ID_BYTES} bytes")
    return bytes([len(chain_id)]) + chain_id


def _check_block_id(block_id: bytes | None, nil_allowed: bool) -> None:
    if block_id is None:
        if not nil_allowed:
            raise UsageError("a proposal must name a block")
        return
    if len(block_id) != BLOCK_ID_BYTES:
        raise UsageError(f"block_id must be {BLOCK_ID_BYTES} bytes")


def _check_position(height: int, round_: int) -> None:
    if height < 0 or not 0 <= round_ <= MAX_ROUND:
        raise UsageError("height and round must be non-negative 64/31-bit integers")


def vote_sign_bytes(
    chain_id: bytes, height: int, round_: int, vote_type: VoteType, block_id: bytes | None
) -> bytes:
    """The exact bytes a validator signs for a prevote or precommit (nil = no block)."""
    fields = _VOTE_FIELDS.pack(
        height, round_, int(vote_type), block_id is not None, block_id or _NIL_ID
    )
    return VOTE_DOMAIN + _chain_prefix(chain_id) + fields


def proposal_sign_bytes(
    chain_id: bytes, height: int, round_: int, valid_round: int, block_id: bytes
) -> bytes:
    """The exact bytes a proposer signs for <PROPOSAL, h, r, id(v), vr> (line 19)."""
    fields = _PROPOSAL_FIELDS.pack(height, round_, valid_round, block_id)
    return PROPOSAL_DOMAIN + _chain_prefix(chain_id) + fields


def _split_chain(data: bytes) -> tuple[bytes, bytes]:
    if not data or not 1 <= data[0] <= MAX_CHAIN_ID_BYTES or len(data) < 1 + data[0]:
        raise FormatError("bad chain_id prefix in consensus message")
    return data[1 : 1 + data[0]], data[1 + data[0] :]


@dataclass(frozen=True, slots=True)
class Vote:
    """<PREVOTE|PRECOMMIT, height, round, id(v) or nil> signed by ``validator``."""

    chain_id: bytes
    height: int
    round: int
    vote_type: VoteType
    block_id: bytes | None
    validator: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_position(self.height, self.round)
        _check_block_id(self.block_id, nil_allowed=True)
        if len(self.validator) != KEY_BYTES or len(self.signature) != SIGNATURE_BYTES:
            raise UsageError("validator key must be 32 bytes and signature 64 bytes")

    def sign_bytes(self) -> bytes:
        return vote_sign_bytes(
            self.chain_id, self.height, self.round, self.vote_type, self.block_id
        )

    def to_bytes(self) -> bytes:
        return self.sign_bytes()[len(VOTE_DOMAIN) :] + self.validator + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> Vote:
        """Parse the wire form; any malformed input raises ``FormatError``."""
        chain_id, rest = _split_chain(data)
        if len(rest) != _VOTE_FIELDS.size + KEY_BYTES + SIGNATURE_BYTES:
            raise FormatError("vote has the wrong length")
        height, round_, vtype, has_block, block_id = _VOTE_FIELDS.unpack_from(rest)
        if vtype not in (1, 2) or has_block not in (0, 1):
            raise FormatError("vote has an unknown type or nil flag")
        if not has_block and block_id != _NIL_ID:
            raise FormatError("nil vote must carry a zero block id")
        if round_ > MAX_ROUND:
            raise FormatError("vote round out of range")
        tail = rest[_VOTE_FIELDS.size :]
        return cls(
            chain_id, height, round_, VoteType(vtype), block_id if has_block else None,
            tail[:KEY_BYTES], tail[KEY_BYTES:],
        )


@dataclass(frozen=True, slots=True)
class Proposal:
    """<PROPOSAL, height, round, id(v), validRound> signed by ``proposer``.

    The block bytes travel next to the proposal; they are bound to it only through
    ``block_id``, which the application checks when it validates the block.
    """

    chain_id: bytes
    height: int
    round: int
    valid_round: int
    block_id: bytes
    proposer: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_position(self.height, self.round)
        _check_block_id(self.block_id, nil_allowed=False)
        if not -1 <= self.valid_round <= MAX_ROUND:
            raise UsageError("valid_round must be -1 or a round")
        if len(self.proposer) != KEY_BYTES or len(self.signature) != SIGNATURE_BYTES:
            raise UsageError("proposer key must be 32 bytes and signature 64 bytes")

    def sign_bytes(self) -> bytes:
        return proposal_sign_bytes(
            self.chain_id, self.height, self.round, self.valid_round, self.block_id
        )

    def to_bytes(self) -> bytes:
        return self.sign_bytes()[len(PROPOSAL_DOMAIN) :] + self.proposer + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> Proposal:
        """Parse the wire form; any malformed input raises ``FormatError``."""
        chain_id, rest = _split_chain(data)
        if len(rest) != _PROPOSAL_FIELDS.size + KEY_BYTES + SIGNATURE_BYTES:
            raise FormatError("proposal has the wrong length")
        height, round_, valid_round, block_id = _PROPOSAL_FIELDS.unpack_from(rest)
        if round_ > MAX_ROUND or valid_round < -1:
            raise FormatError("proposal round or valid_round out of range")
        tail = rest[_PROPOSAL_FIELDS.size :]
        return cls(
            chain_id, height, round_, valid_round, block_id, tail[:KEY_BYTES], tail[KEY_BYTES:]
        )


SignedMessage = Vote | Proposal

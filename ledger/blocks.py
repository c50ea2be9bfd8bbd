"""Blocks and the hash chain.

A block = header + the ordered record envelopes it commits. The header binds the
previous block's hash, the tree size and RFC 9162 root *after* the block, the proposer's
time and key. The block hash is SHA-256 of the header's fixed binary encoding, so one
hash commits to the whole history: every earlier header through ``prev_hash`` and every
record through the tree root.

Encoding (big-endian, no optional parts, so each header has exactly one encoding):
    "shadowledger/block/v1\\n" || u16 len(network) || network (UTF-8)
    || u64 height || prev_hash[32] || u64 tree_size || tree_root[32]
    || u64 time_ms || proposer[32] || u32 record_count
A block adds: u32 header length || header || for each envelope: u32 length || bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ledger import merkle
from ledger.errors import ChainError, FormatError
from ledger.limits import DEFAULT_LIMITS, Limits

BLOCK_CONTEXT = b"shadowledger/block/v1\n"
_FIXED = struct.Struct(">Q32sQ32sQ32sI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
ZERO_HASH = bytes(32)


@dataclass(frozen=True)
class BlockHeader:
    network: str
    height: int
    prev_hash: bytes
    tree_size: int
    tree_root: bytes
    time_ms: int
    proposer: bytes
    record_count: int

    def to_bytes(self) -> bytes:
        name = self.network.encode()
        return (
            BLOCK_CONTEXT
            + _U16.pack(len(name))
            + name
            + _FIXED.pack(
                self.height,
                self.prev_hash,
                self.tree_size,
                self.tree_root,
                self.time_ms,
                self.proposer,
                self.record_count,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockHeader:
        if not data.startswith(BLOCK_CONTEXT):
            raise FormatError("block header lacks the shadowledger/block/v1 prefix")
        pos = len(BLOCK_CONTEXT)
        try:
            (name_len,) = _U16.unpack_from(data, pos)
            name = data[pos + 2 : pos + 2 + name_len].decode()
            fields = _FIXED.unpack_from(data, pos + 2 + name_len)
        except (struct.error, UnicodeDecodeError) as exc:
            raise FormatError(f"block header is malformed: {exc}") from exc
        header = cls(name, *fields)
        if header.to_bytes() != data:
            raise FormatError("block header has trailing or non-canonical bytes")
        return header

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    envelopes: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        head = self.header.to_bytes()
        parts = [_U32.pack(len(head)), head]
        for env in self.envelopes:
            parts += [_U32.pack(len(env)), env]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Block:
        items = list(_length_prefixed(data, limits))
        if not items:
            raise FormatError("block is empty")
        header = BlockHeader.from_bytes(items[0])
        if header.record_count != len(items) - 1:
            raise FormatError(
                f"block header counts {header.record_count} records, body has {len(items) - 1}"
            )
        if header.record_count > limits.max_block_records:
            raise FormatError(f"block holds {header.record_count} records, over the limit")
        return cls(header, tuple(items[1:]))

    @property
    def hash(self) -> bytes:
        return self.header.hash


def _length_prefixed(data: bytes, limits: Limits) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise FormatError("block is truncated inside a length prefix")
        (size,) = _U32.unpack_from(data, pos)
        if size > max(limits.max_record_bytes, 1 << 16) or pos + 4 + size > len(data):
            raise FormatError(f"block item of {size} bytes is oversized or truncated")
        yield data[pos + 4 : pos + 4 + size]
        pos += 4 + size


def build_block(
    network: str,
    parent: BlockHeader | None,
    genesis_hash: bytes,
    envelopes: Iterable[bytes],
    tree: merkle.Frontier,
    time_ms: int,
    proposer: bytes,
) -> Block:
    """Make the next block; ``tree`` is the frontier before it and is advanced."""
    envs = tuple(envelopes)
    tree.extend(merkle.leaf_hashes(envs))
    header = BlockHeader(
        network=network,
        height=1 if parent is None else parent.height + 1,
        prev_hash=genesis_hash if parent is None else parent.hash,
        tree_size=tree.size,
        tree_root=tree.root(),
        time_ms=time_ms,
        proposer=proposer,
        record_count=len(envs),
    )
    return Block(header, envs)


class ChainVerifier:
    """Walks blocks in order and recomputes every link and root (streaming, O(log n) memory).

    ``check_envelope`` is called on each envelope (signature and policy checks) and raises
    a ``VerificationError`` for a bad one.
    """

    def __init__(
        self,
        network: str,
        genesis_hash: bytes,
        check_envelope: Callable[[bytes], object] | None = None,
    ) -> None:
        self.network = network
        self.genesis_hash = genesis_hash
        self.check_envelope = check_envelope
        self.tree = merkle.Frontier()
        self.last: BlockHeader | None = None

    def add(self, block: Block, leaves: Sequence[bytes] | None = None) -> BlockHeader:
        """Check ``block`` extends the chain; ``leaves``, when the caller already hashed the
        envelopes (``merkle.leaf_hashes``), saves hashing them again."""
        h = block.header
        expected_height = 1 if self.last is None else self.last.height + 1
        expected_prev = self.genesis_hash if self.last is None else self.last.hash
        if h.network != self.network:
            raise ChainError(f"block {h.height} is for network {h.network!r}")
        if h.height != expected_height:
            raise ChainError(f"block height {h.height} follows {expected_height - 1}")
        if not hmac.compare_digest(h.prev_hash, expected_prev):
            raise ChainError(f"block {h.height} does not link to the previous block's hash")
        if self.last is not None and h.time_ms < self.last.time_ms:
            raise ChainError(f"block {h.height} time goes backwards")
        for env in block.envelopes:
            if self.check_envelope is not None:
                self.check_envelope(env)
        self.tree.extend(merkle.leaf_hashes(block.envelopes) if leaves is None else leaves)
        if h.tree_size != self.tree.size:
            raise ChainError(f"block {h.height} claims size {h.tree_size}, has {self.tree.size}")
        if not hmac.compare_digest(h.tree_root, self.tree.root()):
            raise ChainError(f"block {h.height} tree root does not match its records")
        self.last = h
        return h

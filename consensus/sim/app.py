"""The simulated application: deterministic opaque blocks with a validity marker."""

from __future__ import annotations

import hashlib

INVALID_MARK = b"INVALID"


def block_id_of(block: bytes) -> bytes:
    return hashlib.sha256(block).digest()


class SimApplication:
    """getValue/valid(v) for the simulator. Blocks name their height and author; a block
    starting with ``INVALID_MARK`` is one every honest validator must reject."""

    def __init__(self, author: bytes, invalid: bool = False) -> None:
        self._author = author
        self._invalid = invalid
        self._nonce = 0

    def propose_block(self, height: int, round_: int) -> bytes:
        self._nonce += 1
        prefix = INVALID_MARK if self._invalid else b"block"
        fields = b"|".join(str(x).encode() for x in (height, round_, self._nonce))
        return prefix + b"|" + fields + b"|" + self._author.hex().encode()

    def block_id(self, block: bytes) -> bytes:
        return block_id_of(block)

    def validate_block(self, height: int, block: bytes) -> bool:
        return is_valid_block(height, block)

    def decided(self, height: int, block_id: bytes, block: bytes) -> None:
        """Blocks are self-contained here: nothing to stage."""


def is_valid_block(height: int, block: bytes) -> bool:
    """The ground truth the validity invariant checks commits against."""
    parts = block.split(b"|")
    return len(parts) == 5 and parts[0] == b"block" and parts[1] == str(height).encode()

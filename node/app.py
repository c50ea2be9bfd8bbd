"""The ledger as consensus' application: build blocks, validate them, stage decisions.

Consensus treats blocks as opaque bytes; this class gives them meaning. Validation is
deterministic (no clock, no local state beyond the committed chain), so every honest
validator reaches the same verdict for the same block: a Byzantine proposer cannot slip
in a record with a bad signature, a duplicate, or a header that lies about the tree.

Consensus decides height h and may start height h+1 before the driver has durably
committed h; ``decided`` stages the block in memory so that h+1 builds on it, and
``CommitBlock`` actions later write it (in order) to LMDB.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ledger import merkle
from ledger.blocks import Block, BlockHeader, build_block
from ledger.errors import LedgerError
from ledger.ledger_store import Ledger
from ledger.limits import Limits
from node.mempool import Mempool

_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class BlockPolicy:
    max_records: int = 2000
    max_bytes: int = 4 << 20
    idle_block_interval_ms: int = 1000
    """How long a proposer waits for records before proposing an empty block."""


@dataclass
class _Tip:
    header: BlockHeader | None
    hash: bytes
    frontier: merkle.Frontier
    height: int


def header_hash(block: bytes) -> bytes:
    """id(v): SHA-256 of the header bytes, read without decoding the records."""
    if len(block) < 4:
        return hashlib.sha256(block).digest()
    (size,) = _U32.unpack_from(block)
    return hashlib.sha256(block[4 : 4 + size]).digest()


class LedgerApp:
    """``consensus.tendermint.Application`` over the LMDB ledger and the mempool."""

    def __init__(
        self,
        ledger: Ledger,
        mempool: Mempool,
        network: str,
        proposer_key_hash: bytes,
        policy: BlockPolicy,
        limits: Limits,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.ledger = ledger
        self.mempool = mempool
        self.network = network
        self.proposer = proposer_key_hash
        self.policy = policy
        self.limits = limits
        self._clock_ms = clock_ms
        self._verdicts: OrderedDict[bytes, bool] = OrderedDict()
        self._staged: list[tuple[Block, tuple[bytes, ...], tuple[bytes, ...]]] = []
        self.reset_tip()

    def reset_tip(self) -> None:
        """Re-read the tip from the committed ledger (start, catch-up)."""
        head = self.ledger.head
        header = self.ledger.block(head.height).header if head.height else None
        frontier = merkle.Frontier.from_source(self.ledger.tree, head.tree_size)
        self._tip = _Tip(header, head.hash, frontier, head.height)
        self._staged = []
        self._verdicts.clear()

    @property
    def tip_height(self) -> int:
        return self._tip.height

    # --- Application protocol ----------------------------------------------------------

    def block_id(self, block: bytes) -> bytes:
        return header_hash(block)

    def propose_block(self, height: int, round_: int) -> bytes:
        """getValue(): the oldest pending records, after a bounded wait for the first."""
        self._wait_for_records()
        staged_ids = self._staged_ids()
        envelopes = [
            e.raw
            for e in self.mempool.take(self.policy.max_records + len(staged_ids),
                                       self.policy.max_bytes)
            if e.record_id not in staged_ids
        ][: self.policy.max_records]
        tip = self._tip
        time_ms = self._clock_ms()
        if tip.header is not None:
            time_ms = max(time_ms, tip.header.time_ms)
        block = build_block(self.network, tip.header, tip.hash, envelopes, tip.frontier.copy(),
                            time_ms, self.proposer)
        self._remember(block.hash, True)
        return block.to_bytes()

    def _wait_for_records(self) -> None:
        if self.policy.idle_block_interval_ms <= 0:
            return
        deadline = time.monotonic() + self.policy.idle_block_interval_ms / 1000
        with self.mempool.arrived:
            # Staged records already left the mempool (``decided``): any record here is new.
            while len(self.mempool) == 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.mempool.arrived.wait(remaining)

    def validate_block(self, height: int, block: bytes) -> bool:
        """valid(v): deterministic checks against the tip this height builds on."""
        block_id = header_hash(block)
        cached = self._verdicts.get(block_id)
        if cached is not None:
            return cached
        try:
            verdict = self._check(height, Block.from_bytes(block, self.limits)) is None
        except LedgerError:
            verdict = False
        self._remember(block_id, verdict)
        return verdict

    def _check(self, height: int, block: Block) -> str | None:
        """None if valid, else the reason (kept for logging by callers that want it)."""
        h, tip = block.header, self._tip
        if h.network != self.network or h.height != height or height != tip.height + 1:
            return "wrong network or height"
        if h.prev_hash != tip.hash:
            return "does not extend the tip"
        if tip.header is not None and h.time_ms < tip.header.time_ms:
            return "time goes backwards"
        if h.record_count > self.policy.max_records:
            return "too many records"
        seen = set(self._staged_ids())
        frontier = tip.frontier.copy()
        for leaf, rid in self.mempool.verify_for_block(block.envelopes):
            if rid in seen or self.ledger.index_of(rid) is not None:
                return "duplicate record"
            seen.add(rid)
            frontier.append(leaf)
        if h.tree_size != frontier.size or h.tree_root != frontier.root():
            return "tree size or root does not match the records"
        return None

    def _remember(self, block_id: bytes, verdict: bool) -> None:
        self._verdicts[block_id] = verdict
        while len(self._verdicts) > 256:
            self._verdicts.popitem(last=False)

    # --- decisions ---------------------------------------------------------------------

    def decided(self, height: int, block_id: bytes, block: bytes) -> None:
        """Stage a decided block as the new tip (durable commit follows in order)."""
        if height != self._tip.height + 1:
            return  # already staged (or applied by catch-up)
        parsed = Block.from_bytes(block, self.limits)
        checked = self.mempool.verify_for_block(parsed.envelopes)
        self._tip.frontier.extend(leaf for leaf, _ in checked)
        self._tip = _Tip(parsed.header, parsed.hash, self._tip.frontier, height)
        ids = tuple(rid for _, rid in checked)
        leaves = tuple(leaf for leaf, _ in checked)
        self._staged.append((parsed, ids, leaves))
        self.mempool.remove(ids, leaves)
        self._verdicts.clear()

    def staged(self, height: int
               ) -> tuple[Block, tuple[bytes, ...], tuple[bytes, ...]] | None:
        """(block, record ids, leaf hashes) of a decided block not yet written."""
        return next((s for s in self._staged if s[0].header.height == height), None)

    def committed(self, height: int) -> None:
        """The driver wrote ``height`` durably: it no longer needs staging."""
        self._staged = [s for s in self._staged if s[0].header.height > height]

    def _staged_ids(self) -> frozenset[bytes]:
        if not self._staged:
            return frozenset()
        return frozenset().union(*(s[1] for s in self._staged))

"""The ledger as consensus' application: build blocks, validate them, stage decisions.

Consensus treats blocks as opaque bytes; this class gives them meaning. Validation is
deterministic (no clock, no local state beyond the committed chain), so every honest
validator reaches the same verdict for the same block: a Byzantine proposer cannot slip
in a record with a bad signature, a duplicate, a record the sharing policy refuses at the
block's time (ledger/policy.py), or a header that lies about the tree. One check reads
the clock, on live proposals only: a block time too far ahead of this validator's clock
is refused, since the proposer chooses the time the policy is checked at.

Consensus decides height h and may start height h+1 before the driver has durably
committed h; ``decided`` stages the block in memory so that h+1 builds on it, and
``CommitBlock`` actions later write it (in order) to LMDB.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ledger import merkle
from ledger.blocks import Block, BlockHeader, build_block
from ledger.errors import LedgerError, VerificationError
from ledger.governance import GovernanceState, latest_state
from ledger.ledger_store import Ledger
from ledger.limits import Limits
from ledger.policy import (
    PolicyBook,
    PolicyChanges,
    PolicyFacts,
    PolicyView,
    check_records,
    policy_facts,
)
from ledger.records import Envelope, Keyring
from node.logging_setup import get_logger
from node.mempool import Mempool
from node.priority import PRIORITY

_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class BlockPolicy:
    max_records: int = 2000
    max_bytes: int = 4 << 20
    idle_block_interval_ms: int = 1000
    """How long a proposer waits for records before proposing an empty block."""
    max_time_ahead_ms: int = 5000
    """A proposal whose block time is further ahead of this validator's clock is refused."""


class Staged(NamedTuple):
    """A decided block not yet written, with what the commit needs."""

    block: Block
    ids: tuple[bytes, ...]
    leaves: tuple[bytes, ...]
    policy: PolicyChanges


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
        proposer_key_hash: bytes | Callable[[int], bytes],
        policy: BlockPolicy,
        limits: Limits,
        book: PolicyBook,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        on_refused: Callable[[Sequence[tuple[bytes, str]]], None] = lambda refused: None,
        log: Any = None,
    ) -> None:
        self.ledger = ledger
        self.mempool = mempool
        self.network = network
        self.proposer = proposer_key_hash
        """Key hash written as the proposer of our blocks, or one per height (a node
        rotating its validator key names the key in that height's set)."""
        self.policy = policy
        self.limits = limits
        self.book = book
        self._clock_ms = clock_ms
        self._on_refused = on_refused
        self.log = log if log is not None else get_logger("app")
        self._verdicts: OrderedDict[bytes, bool] = OrderedDict()
        self._parsed: dict[bytes, tuple[Block, list[tuple[bytes, bytes]]]] = {}
        """Blocks validated on the current tip, parsed, with (leaf hash, record id) of each
        record: ``decided`` reuses them instead of parsing and hashing the block again."""
        self._changes: dict[bytes, PolicyView] = {}
        """Policy views of blocks proposed or validated on the current tip, by block id:
        ``decided`` takes their changes instead of decoding the records again."""
        self._staged: list[Staged] = []
        self._hash_of: tuple[object, bytes] = (None, b"")  # committed membership, its hash
        self.reset_tip()

    def reset_tip(self) -> None:
        """Re-read the tip from the committed ledger (start, catch-up)."""
        head = self.ledger.head
        header = self.ledger.block(head.height).header if head.height else None
        frontier = merkle.Frontier.from_source(self.ledger.tree, head.tree_size)
        self._tip = _Tip(header, head.hash, frontier, head.height)
        self._staged = []
        self._verdicts.clear()
        self._changes.clear()
        self._parsed.clear()

    @property
    def tip_height(self) -> int:
        return self._tip.height

    # --- Application protocol ----------------------------------------------------------

    def block_id(self, block: bytes) -> bytes:
        return header_hash(block)

    def propose_block(self, height: int, round_: int) -> bytes:
        """getValue(): the oldest pending records, after a bounded wait for the first."""
        self._wait_for_records()
        with PRIORITY.critical():
            return self._build_block(height)

    def _build_block(self, height: int) -> bytes:
        staged_ids = self._staged_ids()
        taken = [
            e
            for e in self.mempool.take(self.policy.max_records + len(staged_ids),
                                       self.policy.max_bytes)
            if e.record_id not in staged_ids
        ][: self.policy.max_records]
        tip = self._tip
        time_ms = self._clock_ms()
        if tip.header is not None:
            time_ms = max(time_ms, tip.header.time_ms)
        view = self.policy_view()
        envelopes = self._admissible(view, taken, time_ms)
        block = build_block(self.network, tip.header, tip.hash, [e.raw for e in envelopes],
                            tip.frontier.copy(), time_ms,
                            self.proposer if isinstance(self.proposer, bytes)
                            else self.proposer(height))
        self._remember(block.hash, True)
        self._changes[block.hash] = view
        self._keep_parsed(block, [(e.leaf_hash, e.record_id) for e in envelopes])
        return block.to_bytes()

    def _admissible(self, view: PolicyView, taken: list[Envelope], time_ms: int
                    ) -> list[Envelope]:
        """The records the policy lets in at ``time_ms``, applied to ``view`` in order; the
        others (e.g. their agreement expired while they waited) leave the mempool and
        their submitters are told why."""
        kept: list[Envelope] = []
        refused: list[tuple[bytes, str]] = []
        for envelope in taken:
            try:
                view.apply(self._facts(envelope, envelope.leaf_hash, view), time_ms)
            except LedgerError as exc:
                refused.append((envelope.record_id, str(exc)))
                continue
            kept.append(envelope)
        if refused:
            self.mempool.remove(rid for rid, _ in refused)
            self._on_refused(refused)
            self.log.info("records left out of a proposal", count=len(refused),
                          first=refused[0][1][:300])
        return kept

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
        with PRIORITY.critical():
            return self._validate(height, block)

    def _validate(self, height: int, block: bytes) -> bool:
        block_id = header_hash(block)
        cached = self._verdicts.get(block_id)
        if cached is not None:
            return cached
        try:
            parsed = Block.from_bytes(block, self.limits)
        except LedgerError as exc:
            return self._invalid(height, block_id, f"malformed block: {exc}")
        ahead = parsed.header.time_ms - self._clock_ms()
        if ahead > self.policy.max_time_ahead_ms:  # not remembered: the clock moves on
            self.log.warning("proposed block refused", height=height, block=block_id.hex()[:16],
                             reason=f"block time is {ahead} ms ahead of this validator's "
                             f"clock (at most {self.policy.max_time_ahead_ms})")
            return False
        try:
            reason = self._check(height, parsed)
        except LedgerError as exc:
            reason = str(exc)
        if reason is not None:
            return self._invalid(height, block_id, reason)
        self._remember(block_id, True)
        return True

    def _invalid(self, height: int, block_id: bytes, reason: str) -> bool:
        self.log.warning("proposed block is invalid", height=height, block=block_id.hex()[:16],
                         reason=reason[:500])
        self._remember(block_id, False)
        return False

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
        view = self.policy_view()  # roles and record keys of the membership at this height
        facts: list[PolicyFacts] = []
        checked = self.mempool.verify_for_block(block.envelopes,
                                                keyring=self._keyring_if_changed(view))
        committed = self.ledger.indices_of([rid for _, rid in checked])
        for raw, (leaf, rid), index in zip(block.envelopes, checked, committed, strict=True):
            if rid in seen or index is not None:
                return "duplicate record"
            seen.add(rid)
            frontier.append(leaf)
            facts.append(self._facts(raw, leaf, view))
        if h.tree_size != frontier.size or h.tree_root != frontier.root():
            return "tree size or root does not match the records"
        try:
            check_records(view, facts, h.time_ms)
        except VerificationError as exc:
            return f"sharing policy: {exc}"
        self._changes[block.hash] = view
        self._keep_parsed(block, checked)
        return None

    def _keyring_if_changed(self, view: PolicyView) -> Keyring | None:
        """The record keys of ``view``'s height when a staged block changed the membership
        (the mempool holds the committed one's until that block is written: a block of the
        next height may already carry records signed with a key the change brought in);
        None otherwise, so the mempool's cached verdicts are used."""
        staged = view.rules.membership
        if staged is self.book.governance.membership() or staged.hash == self._committed_hash():
            return None
        return view.rules.keyring

    def _committed_hash(self) -> bytes:
        membership = self.book.governance.membership()
        if self._hash_of[0] is not membership:
            self._hash_of = (membership, membership.hash)
        return self._hash_of[1]

    def _keep_parsed(self, block: Block, checked: list[tuple[bytes, bytes]]) -> None:
        """Keyed by block id, which binds the records (the header holds their tree root,
        checked against them before this is called)."""
        if len(self._parsed) >= 16:  # a few rounds' proposals at one height at most
            self._parsed.clear()
        self._parsed[block.hash] = (block, checked)

    def _facts(self, record: bytes | Envelope, leaf: bytes, view: PolicyView) -> PolicyFacts:
        """A record's policy facts: cached by the mempool when it verified the record,
        else decoded here with the record keys of the membership in force (``view``; the
        view checks a cached record's signer against them, too)."""
        known = self.mempool.facts(leaf)
        if known is not None:
            return known
        envelope = record if isinstance(record, Envelope) else Envelope.from_bytes(
            record, self.limits)
        return policy_facts(envelope, view.rules.keyring)

    def _remember(self, block_id: bytes, verdict: bool) -> None:
        self._verdicts[block_id] = verdict
        while len(self._verdicts) > 256:
            self._verdicts.popitem(last=False)

    # --- decisions ---------------------------------------------------------------------

    def decided(self, height: int, block_id: bytes, block: bytes) -> None:
        """Stage a decided block as the new tip (durable commit follows in order)."""
        if height != self._tip.height + 1:
            return  # already staged (or applied by catch-up)
        known = self._parsed.get(block_id)
        if known is not None:  # validated or proposed here: parsed and hashed once
            parsed, checked = known
        else:
            parsed = Block.from_bytes(block, self.limits)
            checked = self.mempool.verify_for_block(
                parsed.envelopes, keyring=self._keyring_if_changed(self.policy_view()))
        self._tip.frontier.extend(leaf for leaf, _ in checked)
        self._tip = _Tip(parsed.header, parsed.hash, self._tip.frontier, height)
        ids = tuple(rid for _, rid in checked)
        leaves = tuple(leaf for leaf, _ in checked)
        view = self._changes.get(parsed.hash)
        policy = (view.block_changes(height, parsed.header.tree_size, parsed.header.time_ms)
                  if view is not None else
                  self.book.changes_for(height, parsed.envelopes, parsed.header.time_ms,
                                        self._staged_policy(),
                                        tree_size=parsed.header.tree_size))
        self._staged.append(Staged(parsed, ids, leaves, policy))
        self.mempool.remove(ids, leaves, decided=True)
        self._verdicts.clear()
        self._changes.clear()
        self._parsed.clear()

    def staged(self, height: int) -> Staged | None:
        """A decided block not yet written."""
        return next((s for s in self._staged if s.block.header.height == height), None)

    def committed(self, height: int) -> None:
        """The driver wrote ``height`` durably: it no longer needs staging."""
        self._staged = [s for s in self._staged if s.block.header.height > height]

    def commit_staged(self, height: int, certificate: bytes,
                      also: Sequence[tuple[bytes, bytes, bytes]] = ()) -> Staged:
        """Write staged block ``height`` with its policy and governance changes (and
        ``also``'s puts: see ``Ledger.commit_block``), in one transaction."""
        staged = self.staged(height)
        if staged is None:
            raise LedgerError(f"block {height} is not staged")
        self.ledger.commit_block(staged.block, certificate, record_ids=staged.ids,
                                 leaf_hashes=staged.leaves, policy=staged.policy, also=also)
        self.book.absorb(staged.policy)
        self.committed(height)
        return staged

    def _staged_ids(self) -> frozenset[bytes]:
        if not self._staged:
            return frozenset()
        return frozenset().union(*(s.ids for s in self._staged))

    def _staged_policy(self) -> list[PolicyChanges]:
        return [s.policy for s in self._staged]

    def policy_view(self) -> PolicyView:
        """The policy state after the committed chain and every staged block: what the
        next block is checked against. Safe from any thread (admission): the staged list
        is read before the committed state, and a block leaves staging only after the
        committed state took it in, so no block is ever missing from the view."""
        staged = list(self._staged)
        return self.book.view([s.policy for s in staged])

    def governance_state(self) -> GovernanceState:
        """The memberships after the committed chain and every staged block: its
        ``current`` decides the next block, ``at_height(h)`` the staged ones too. Safe from
        any thread, like ``policy_view``."""
        staged = list(self._staged)
        return latest_state(self.book.governance.state, [s.policy.governance for s in staged])

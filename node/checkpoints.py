"""Validators cosign each committed tree size; 2f+1 signatures make a checkpoint final.

After committing a block, every validator signs the C2SP checkpoint (origin, size, root)
of the new tree and shares its signature line with its peers. Each node checks every line
against the root it computed itself, and stores the note once a quorum of distinct
validators signed it. Acknowledgements to clients wait for that final checkpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ledger.checkpoint import Checkpoint, checkpoint_note
from ledger.errors import LedgerError
from ledger.keys import SigningKey, VerifierKey
from ledger.ledger_store import Ledger
from ledger.note import NoteSignature, signature_for
from node.peers import PeerNetwork
from proto import node_pb2

MAX_PENDING_SIZES = 64
"""Signatures for sizes this node has not reached yet are kept for this many sizes."""


class CheckpointCollector:
    def __init__(
        self,
        network: str,
        validators: Sequence[VerifierKey],
        threshold: int,
        ledger: Ledger,
        peers: PeerNetwork,
        key: SigningKey | None,
        log: Any,
    ) -> None:
        self.network = network
        self._by_id = {(k.name, k.key_id): k for k in validators}
        self.threshold = threshold
        self.ledger = ledger
        self.peers = peers
        self.key = key
        self.log = log
        self._signatures: dict[int, dict[bytes, NoteSignature]] = {}
        self._pending: dict[int, list[str]] = {}
        self._cond = threading.Condition()
        self.listeners: list[Callable[[], None]] = []
        """Called (without blocking) after each final checkpoint is stored: witness feeds."""
        self.latest = ledger.latest_checkpoint()
        self.final_size = 0 if self.latest is None else self.latest[0]
        self.stored_size = self.final_size
        """The largest final size whose note is in the store (``final_size`` is known, and
        acknowledged, a moment before)."""

    def _checkpoint(self, size: int) -> Checkpoint:
        return Checkpoint(self.network, size, self.ledger.tree.root(size))

    def sign_and_share(self, size: int) -> None:
        """Called by the consensus thread after committing the block that ends at ``size``."""
        if self.key is not None:
            line = signature_for(self._checkpoint(size).to_text(), self.key).to_line()
            self.add(size, line)
            msg = node_pb2.CheckpointSignature(tree_size=size, signature_line=line)
            self.peers.broadcast(node_pb2.PeerMessage(checkpoint_signature=msg))
        self._replay_pending(size)

    def _replay_pending(self, size: int) -> None:
        with self._cond:
            ready = [s for s in self._pending if s <= size]
            lines = [(s, line) for s in ready for line in self._pending.pop(s)]
        for s, line in lines:
            self.add(s, line)

    def add(self, size: int, line: str) -> bool:
        """Check a validator's signature line for ``size``; True if it counted."""
        if size <= 0:
            return False
        try:
            sig = NoteSignature.from_line(line.rstrip("\n"))
        except LedgerError:
            return False
        key = self._by_id.get((sig.name, sig.key_id))
        if key is None:
            return False
        if size > self.ledger.tree.size:
            return self._keep_for_later(size, line)
        if not key.verify(self._checkpoint(size).to_text().encode(), sig.signature):
            self.log.warning("bad checkpoint signature", validator=key.name, size=size)
            return False
        with self._cond:
            sigs = self._signatures.setdefault(size, {})
            if key.key_hash in sigs:
                return False
            sigs[key.key_hash] = sig
            # Exactly once per size: the note becomes final with the quorum-th signature;
            # later ones add nothing an auditor needs.
            reached = len(sigs) == self.threshold
            quorum = list(sigs.values())
        if reached:
            self._store(size, quorum)
        return True

    def _keep_for_later(self, size: int, line: str) -> bool:
        with self._cond:
            if size > self.ledger.tree.size and len(self._pending) < MAX_PENDING_SIZES:
                self._pending.setdefault(size, []).append(line)
        return False

    def _store(self, size: int, sigs: list[NoteSignature]) -> None:
        """Wake the waiters with the final note, then write it (durably, outside the lock).

        Acknowledgements need the note, not its copy on this disk: the records it covers
        are durable already (their block was written before this node signed), and the
        note proves itself with its quorum of signatures. Writing first put one more
        fsync on every acknowledgement's path."""
        note = checkpoint_note(self._checkpoint(size), sorted(sigs, key=lambda s: s.name))
        with self._cond:
            if size >= self.final_size:
                self.final_size = size
                self.latest = (size, note)
            for old in [s for s in self._signatures if s < size - 1000]:
                del self._signatures[old]
            self._cond.notify_all()
        self.ledger.add_checkpoint(size, note)
        with self._cond:
            self.stored_size = max(self.stored_size, size)
            self._cond.notify_all()
        for listener in self.listeners:
            listener()

    def wait_stored(self, min_size: int, timeout: float) -> bool:
        """Wait until a note final for ``min_size`` leaves or more is in the store, if one
        is final already (a read right after an acknowledgement); False otherwise."""
        with self._cond:
            if self.final_size < min_size:
                return False
            return self._cond.wait_for(lambda: self.stored_size >= min_size, timeout)

    def wait_final(self, min_size: int, timeout: float) -> tuple[int, bytes] | None:
        """The latest final checkpoint once it covers ``min_size`` leaves, or None."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.final_size >= min_size, timeout):
                return None
            return self.latest

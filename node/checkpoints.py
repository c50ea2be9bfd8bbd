"""Validators cosign each committed tree size; 2f+1 signatures make a checkpoint final.

After committing a block, every validator signs the C2SP checkpoint (origin, size, root)
of the new tree and shares its signature line with its peers. Each node checks every line
against the root it computed itself, and stores the note once a quorum of distinct
validators signed it. Acknowledgements to clients wait for that final checkpoint.

Across governance changes the signers of size T are the validators of the membership
``for_size(T)`` (docs/GOVERNANCE.md: the membership adopted at tree size T_i signs sizes
above T_i; the one before it signs up to T_i), with that membership's threshold. A node
signs with whichever of its keys (rotation) belongs to that membership, and never signs
a size that is not above the last final size it stored under an older membership than the
one in force: after a change, the empty block ending at T_i is not signed again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ledger.checkpoint import Checkpoint, checkpoint_note
from ledger.errors import LedgerError
from ledger.keys import SigningKey, VerifierKey
from ledger.ledger_store import Ledger
from ledger.membership import Membership
from ledger.note import NoteSignature, signature_for
from node.peers import PeerNetwork
from proto import node_pb2

MAX_PENDING_SIZES = 64
"""Signatures for sizes this node has not reached yet are kept for this many sizes."""
MAX_PENDING_LINES = 256
"""... and at most this many lines per size (their signers are checked on arrival)."""


class CheckpointCollector:
    def __init__(
        self,
        network: str,
        for_size: Callable[[int], Membership],
        ledger: Ledger,
        peers: PeerNetwork,
        keys: Sequence[SigningKey],
        log: Any,
    ) -> None:
        self.network = network
        self._for_size = for_size
        self.ledger = ledger
        self.peers = peers
        self.keys = list(keys)
        self.log = log
        self._signatures: dict[int, dict[bytes, NoteSignature]] = {}
        self._pending: dict[int, list[str]] = {}
        self._cond = threading.Condition()
        self.listeners: list[Callable[[], None]] = []
        """Called (without blocking) after each final checkpoint is stored: witness feeds."""
        self.latest = ledger.latest_checkpoint()
        self.final_size = 0 if self.latest is None else self.latest[0]

    def signers(self, size: int) -> tuple[dict[tuple[str, bytes], VerifierKey], int]:
        """The validator keys (by note key name and id) that sign ``size``, and how many
        distinct ones make it final."""
        membership = self._for_size(size)
        return {(k.name, k.key_id): k for k in membership.validator_keys}, membership.threshold

    @property
    def threshold(self) -> int:
        """Signatures the next checkpoint needs."""
        return self.signers(self.ledger.tree.size + 1)[1]

    def _my_key(self, size: int) -> SigningKey | None:
        by_id, _ = self.signers(size)
        return next((k for k in self.keys
                     if (k.verifier.name, k.verifier.key_id) in by_id), None)

    def _checkpoint(self, size: int) -> Checkpoint:
        return Checkpoint(self.network, size, self.ledger.tree.root(size))

    def sign_and_share(self, size: int) -> None:
        """Called by the consensus thread after committing the block that ends at ``size``."""
        # A size at or below the last final one belongs to an older membership when the
        # one in force now differs (the empty block after an adoption ends at T_i): no new
        # signature for it. Otherwise re-signing repeats the line (peers may have missed it).
        stale = (size <= self.final_size and self._for_size(size).hash
                 != self._for_size(self.ledger.tree.size + 1).hash)
        key = None if stale else self._my_key(size)
        if key is not None:
            line = signature_for(self._checkpoint(size).to_text(), key).to_line()
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
        if size > self.ledger.tree.size:
            # The signers of a size not reached yet may change with the blocks before it.
            return self._keep_for_later(size, line)
        by_id, threshold = self.signers(size)
        key = by_id.get((sig.name, sig.key_id))
        if key is None:
            return False
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
            reached = len(sigs) == threshold
            quorum = list(sigs.values())
        if reached:
            self._store(size, quorum)
        return True

    def _keep_for_later(self, size: int, line: str) -> bool:
        with self._cond:
            if size > self.ledger.tree.size and len(self._pending) < MAX_PENDING_SIZES:
                lines = self._pending.setdefault(size, [])
                if len(lines) < MAX_PENDING_LINES:
                    lines.append(line)
        return False

    def _store(self, size: int, sigs: list[NoteSignature]) -> None:
        """Write the final note (durably, outside the lock), then wake the waiters."""
        note = checkpoint_note(self._checkpoint(size), sorted(sigs, key=lambda s: s.name))
        self.ledger.add_checkpoint(size, note)
        with self._cond:
            if size >= self.final_size:
                self.final_size = size
                self.latest = (size, note)
            for old in [s for s in self._signatures if s < size - 1000]:
                del self._signatures[old]
            self._cond.notify_all()
        for listener in self.listeners:
            listener()

    def wait_final(self, min_size: int, timeout: float) -> tuple[int, bytes] | None:
        """The latest final checkpoint once it covers ``min_size`` leaves, or None."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.final_size >= min_size, timeout):
                return None
            return self.latest

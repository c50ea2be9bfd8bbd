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
import time
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
_CACHED_CHECKPOINTS = 8


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
        self.defer_writes = False
        """Set by the consensus driver: final notes are written with the next block (or
        the driver's next idle moment) instead of in a durable write of their own."""
        self._unwritten: dict[int, bytes] = {}
        self._unwritten_since = 0.0
        self._checkpoints: dict[int, Checkpoint] = {}

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
        """The checkpoint of ``size`` (a size this tree has reached, so its root never
        changes). Cached for the last few sizes: each height's own line, the 3 peers'
        lines and the note all need it, and the root is read from the tree store."""
        checkpoint = self._checkpoints.get(size)
        if checkpoint is None:
            checkpoint = Checkpoint(self.network, size, self.ledger.tree.root(size))
            with self._cond:
                self._checkpoints[size] = checkpoint
                while len(self._checkpoints) > _CACHED_CHECKPOINTS:
                    del self._checkpoints[min(self._checkpoints)]
        return checkpoint

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
        """Wake the waiters with the final note, then have it written: now (outside the
        lock), or with the driver's next block when ``defer_writes``.

        Acknowledgements need the note, not its copy on this disk: the records it covers
        are durable already (their block was written before this node signed), and the
        note proves itself with its quorum of signatures. Writing it first, in a durable
        write of its own, put one more fsync on every acknowledgement's path. Reads serve
        an unwritten note from memory (``note``, ``latest``); a crash loses at most notes
        that the other validators store too, and the next block brings a newer one. The
        note of an adoption's tree size is written at once (``_hands_over``)."""
        note = checkpoint_note(self._checkpoint(size), sorted(sigs, key=lambda s: s.name))
        with self._cond:
            if size >= self.final_size:
                self.final_size = size
                self.latest = (size, note)
            for old in [s for s in self._signatures if s < size - 1000]:
                del self._signatures[old]
            if not self._unwritten:
                self._unwritten_since = time.monotonic()
            self._unwritten[size] = note
            self._cond.notify_all()
        if not self.defer_writes or self._hands_over(size):
            self.flush()

    def _hands_over(self, size: int) -> bool:
        """Whether ``size`` is the last one an older membership signs (T_i of an adoption):
        its note is a link of the membership chain, so it is written at once rather than
        risked in the deferred window (a crash there would leave this node unable to build
        the chain)."""
        signer, after = self._for_size(size), self._for_size(size + 1)
        return signer is not after and signer.hash != after.hash

    def unwritten(self) -> list[tuple[int, bytes]]:
        """Final notes not in the store yet (they stay listed until ``written``)."""
        with self._cond:
            return sorted(self._unwritten.items())

    def written(self, sizes: Sequence[int]) -> None:
        """The notes for ``sizes`` are durably stored now."""
        if not sizes:
            return
        with self._cond:
            for size in sizes:
                self._unwritten.pop(size, None)
        for listener in self.listeners:
            listener()

    def flush(self, older_than: float = 0.0) -> None:
        """Write every unwritten final note now, in one durable transaction (only if the
        first became final more than ``older_than`` seconds ago)."""
        with self._cond:
            if time.monotonic() - self._unwritten_since < older_than:
                return
        notes = self.unwritten()
        if notes:
            self.ledger.add_checkpoints(notes)
            self.written([size for size, _ in notes])

    def note(self, size: int) -> bytes | None:
        """The final note for tree ``size``, stored or not yet."""
        with self._cond:
            note = self._unwritten.get(size)
        return note if note is not None else self.ledger.checkpoint(size)

    def wait_final(self, min_size: int, timeout: float) -> tuple[int, bytes] | None:
        """The latest final checkpoint once it covers ``min_size`` leaves, or None."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.final_size >= min_size, timeout):
                return None
            return self.latest

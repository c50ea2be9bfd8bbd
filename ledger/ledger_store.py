"""The shadow ledger on disk: blocks, envelopes, ids, checkpoints and the Merkle tree.

One committed block = one durable LMDB write transaction holding the block, its
envelopes (by index), their ids, the new tree nodes, its certificate and checkpoint.
Before committing, the block is checked to extend the stored chain: height, previous
hash, tree size and the recomputed tree root must all match its header.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledger import merkle
from ledger.blocks import Block, BlockHeader
from ledger.errors import ChainError, CorruptStoreError, UsageError
from ledger.records import Envelope
from ledger.storage import Storage, StorageConfig
from ledger.subjects import SubjectIndex
from ledger.tlogproof import TlogProof
from ledger.tree_store import TreeStore

if TYPE_CHECKING:
    from ledger.policy import PolicyChanges

_U64 = struct.Struct(">Q")
_HEAD = b"chain.head"  # height (u64) || block hash


def _k(n: int) -> bytes:
    return _U64.pack(n)


@dataclass(frozen=True)
class Head:
    height: int
    hash: bytes
    tree_size: int


class Ledger:
    """Append blocks, read records and serve proofs from one ``Storage``."""

    def __init__(self, storage: Storage, genesis_hash: bytes) -> None:
        self.storage = storage
        self.genesis_hash = genesis_hash
        self.tree = TreeStore(storage)
        names = (b"records", b"record_ids", b"blocks", b"certificates", b"checkpoints", b"meta",
                 b"policy", b"governance")
        self._db = {name: storage.db(name) for name in names if storage.has_db(name)}
        self.head = self._load_head()
        self.subjects = SubjectIndex(storage)
        self.subjects.catch_up(self.tree.size, self.record)

    def _load_head(self) -> Head:
        with self.storage.read() as txn:
            raw = txn.get(_HEAD, db=self._db[b"meta"])
        if raw is None:
            if self.tree.size:
                raise CorruptStoreError("tree holds leaves but no block was committed")
            return Head(0, self.genesis_hash, 0)
        height = _U64.unpack(raw[:8])[0]
        header = self.block(height).header
        if header.hash != raw[8:] or header.tree_size != self.tree.size:
            raise CorruptStoreError(
                f"chain head {height} disagrees with the stored block or tree"
                f" (tree size {self.tree.size}, block says {header.tree_size})"
            )
        return Head(height, header.hash, header.tree_size)

    # --- writing -----------------------------------------------------------------------

    def check_extends(self, header: BlockHeader) -> None:
        """Raise ``ChainError`` unless ``header`` is the next block of the stored chain."""
        if header.height != self.head.height + 1:
            raise ChainError(f"block {header.height} does not follow height {self.head.height}")
        if not hmac.compare_digest(header.prev_hash, self.head.hash):
            raise ChainError(f"block {header.height} does not link to block {self.head.height}")
        if header.tree_size != self.head.tree_size + header.record_count:
            raise ChainError(f"block {header.height} tree size does not add up")

    def commit_block(
        self,
        block: Block,
        certificate: bytes = b"",
        checkpoint_note: bytes | None = None,
        record_ids: Sequence[bytes] | None = None,
        leaf_hashes: Sequence[bytes] | None = None,
        policy: PolicyChanges | None = None,
        also: Sequence[tuple[bytes, bytes, bytes]] = (),
    ) -> Head:
        """Durably append ``block`` (its records must be verified by the caller).

        ``record_ids`` and ``leaf_hashes``, when the caller has them, save parsing and
        hashing every envelope again; the root check below still catches wrong hashes.
        ``policy``: the block's sharing-policy and governance changes, written in the same
        transaction so that a crash never leaves the policy or membership state and the
        chain apart.
        ``also``: more (sub-database, key, value) puts for the same transaction (the node's
        consensus safety state: one fsync for both).
        """
        h = block.header
        self.check_extends(h)
        if policy is not None and policy.height != h.height:
            raise UsageError(f"policy changes of block {policy.height} given for {h.height}")
        ids = record_ids
        if ids is None:
            ids = [Envelope.from_bytes(env).record_id for env in block.envelopes]
        if len(ids) != len(block.envelopes):
            raise UsageError("one record id per envelope is needed")
        with self.storage.write() as txn:
            db = self._db
            first = self.tree.size
            for offset, (env, rid) in enumerate(zip(block.envelopes, ids, strict=True)):
                if not txn.put(rid, _k(first + offset), db=db[b"record_ids"], overwrite=False):
                    raise ChainError(f"record {rid.hex()[:16]} is already on the ledger")
                txn.put(_k(first + offset), env, db=db[b"records"], append=True)
            leaves = merkle.leaf_hashes(block.envelopes) if leaf_hashes is None else leaf_hashes
            self.tree.append(txn, leaves)
            self.subjects.add(txn, first, block.envelopes)  # same transaction as the block
            if not hmac.compare_digest(self.tree.current_root(), h.tree_root):
                raise ChainError(f"block {h.height} tree root does not match its records")
            txn.put(_k(h.height), block.to_bytes(), db=db[b"blocks"], append=True)
            if certificate:
                txn.put(_k(h.height), certificate, db=db[b"certificates"])
            if checkpoint_note is not None:
                txn.put(_k(h.tree_size), checkpoint_note, db=db[b"checkpoints"])
            if policy is not None:
                policy.write(txn, db[b"policy"], db[b"governance"])
            txn.put(_HEAD, _k(h.height) + h.hash, db=db[b"meta"])
            for name, key, value in also:
                txn.put(key, value, db=self.storage.db(name))
        self.head = Head(h.height, h.hash, h.tree_size)
        return self.head

    def add_checkpoint(self, size: int, note: bytes) -> None:
        """Store a (more) signed checkpoint note for tree ``size``."""
        self.add_checkpoints([(size, note)])

    def add_checkpoints(self, notes: Sequence[tuple[int, bytes]]) -> None:
        """Store several (size, note) in one durable transaction."""
        puts = [self.checkpoint_put(size, note) for size, note in notes]
        with self.storage.write() as txn:
            for name, key, value in puts:
                txn.put(key, value, db=self._db[name])

    def checkpoint_put(self, size: int, note: bytes) -> tuple[bytes, bytes, bytes]:
        """The (sub-database, key, value) storing a checkpoint note, for ``commit_block``'s
        ``also``: a note written with the next block costs no fsync of its own."""
        if size > self.tree.size:
            raise UsageError(f"checkpoint for size {size} is beyond the tree ({self.tree.size})")
        return (b"checkpoints", _k(size), note)

    # --- reading -----------------------------------------------------------------------

    def refresh(self, attempts: int = 3) -> Head:
        """Catch up with blocks another process committed (a read-only reader of a live
        node's store); cheap when nothing changed: one read of the chain head.

        The tree and the head are read in two transactions, so a block committed between
        them makes them disagree for a moment: that is retried, a lasting mismatch raised.
        """
        for attempt in range(attempts):
            with self.storage.read() as txn:
                raw = txn.get(_HEAD, db=self._db[b"meta"])
            stored = None if raw is None else (_U64.unpack(raw[:8])[0], bytes(raw[8:]))
            if stored is None or stored == (self.head.height, self.head.hash):
                return self.head
            self.tree.reload()
            try:
                self.head = self._load_head()
            except CorruptStoreError:
                if attempt == attempts - 1:
                    raise
        return self.head

    def _get(self, db: bytes, key: bytes) -> bytes | None:
        # buffers: py-lmdb then skips pre-faulting the value with the GIL released (a
        # thread releasing the GIL may wait 5 ms to get it back); copied before the end.
        with self.storage.read(buffers=True) as txn:
            value = txn.get(key, db=self._db[db])
            return None if value is None else bytes(value)

    def record(self, index: int) -> bytes:
        value = self._get(b"records", _k(index))
        if value is None:
            raise UsageError(f"no record at index {index} (ledger size {self.tree.size})")
        return value

    def records(self, start: int, stop: int) -> Iterator[bytes]:
        """Envelopes ``start .. stop - 1`` in order, from one read snapshot (bulk reads)."""
        if not 0 <= start <= stop <= self.tree.size:
            raise UsageError(f"records {start}..{stop} are not in the ledger ({self.tree.size})")
        with self.storage.read() as txn:
            cursor = txn.cursor(db=self._db[b"records"])
            if start == stop or not cursor.set_key(_k(start)):
                return
            for index, (key, value) in enumerate(cursor, start):
                if index == stop:
                    break
                if _U64.unpack(key)[0] != index:
                    raise CorruptStoreError(f"record {index} is missing from the store")
                yield bytes(value)

    def index_of(self, rid: bytes) -> int | None:
        value = self._get(b"record_ids", rid)
        return None if value is None else _U64.unpack(value)[0]

    def indices_of(self, rids: Iterable[bytes]) -> list[int | None]:
        """``index_of`` for many ids, from one read snapshot (a block's or a batch's)."""
        db = self._db[b"record_ids"]
        with self.storage.read(buffers=True) as txn:  # see _get
            values = [txn.get(rid, db=db) for rid in rids]
            return [None if v is None else _U64.unpack(v)[0] for v in values]

    def block(self, height: int) -> Block:
        value = self._get(b"blocks", _k(height))
        if value is None:
            raise UsageError(f"no block at height {height} (head {self.head.height})")
        return Block.from_bytes(value)

    def blocks(self, start: int = 1) -> Iterator[Block]:
        for height in range(start, self.head.height + 1):
            yield self.block(height)

    def certificate(self, height: int) -> bytes | None:
        return self._get(b"certificates", _k(height))

    def checkpoint(self, size: int) -> bytes | None:
        return self._get(b"checkpoints", _k(size))

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        with self.storage.read() as txn:
            cursor = txn.cursor(db=self._db[b"checkpoints"])
            if not cursor.last():
                return None
            return _U64.unpack(cursor.key())[0], bytes(cursor.value())

    def receipt(self, index: int, size: int | None = None, note: bytes | None = None) -> bytes:
        """A C2SP tlog-proof@v1 for record ``index`` against the checkpoint at ``size``
        (``note``: that checkpoint's note, when the caller holds it)."""
        if size is None:
            latest = self.latest_checkpoint()
            if latest is None:
                raise UsageError("no checkpoint is stored yet")
            size, note = latest
        elif note is None:
            note = self.checkpoint(size)
            if note is None:
                raise UsageError(f"no checkpoint is stored for tree size {size}")
        proof = self.tree.inclusion_proof(index, size)
        return TlogProof(index, tuple(proof), note).to_bytes()

    def consistency_proof(self, size1: int, size2: int) -> Sequence[bytes]:
        return self.tree.consistency_proof(size1, size2)


READONLY_OPEN_ATTEMPTS = 3


def open_readonly(data_dir: str | Path, genesis_hash: bytes,
                  attempts: int = READONLY_OPEN_ATTEMPTS) -> Ledger:
    """A ledger store opened as a read-only reader beside the node that writes it
    (explorers, exports); the caller closes ``ledger.storage``.

    Opening checks the tree against the chain head in two reads; a block the running node
    commits in between fails that check, so it is tried again (a store that is really
    corrupt fails every time)."""
    for attempt in range(attempts):
        storage = Storage(data_dir, StorageConfig(readonly=True))
        try:
            return Ledger(storage, genesis_hash)
        except CorruptStoreError:
            storage.close()
            if attempt == attempts - 1:
                raise
    raise UsageError("open_readonly needs at least one attempt")

"""The off-ledger delivery store: sealed payloads the node holds for its own agency.

A separate LMDB environment (never the ledger's): the ledger is append-only and
replicated to every node, this store is local to the recipient agency's node and made
to be erased. It holds only what a provider's client sealed to the agency's X25519 box
key; the node has no box secret key and never decrypts.

Erasure (``erase``) deletes the entry, leaves a tombstone (the event id and index are
on the ledger anyway) so the payload is not delivered again, then rewrites the whole
environment compacted (``copy(compact=True)``) and replaces the file: LMDB never
overwrites a page in place, so without the rewrite the deleted ciphertext would stay
in a free page until reused. What this cannot reach (file-system journals, SSD wear
levelling, backups) is listed in docs/PRIVACY.md.
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import lmdb

from ledger.errors import LedgerError, StorageError

_STORED, _ERASED = 1, 2
_HEADER = struct.Struct(">BQB")  # state, event index, provider name length


class AlreadyDelivered(LedgerError):
    """A payload for this event is stored already, or was erased (never re-delivered)."""


class StoreFull(StorageError):
    """The delivery store reached its map size."""


@dataclass(frozen=True)
class StoredDelivery:
    event_index: int
    provider: str
    sealed: bytes


class DeliveryStore:
    """Sealed payloads by event id, in their own LMDB environment at ``path``."""

    def __init__(self, path: Path, map_size: int) -> None:
        self.path = path
        self.map_size = map_size
        self._lock = threading.Lock()  # erase swaps the file: no other access meanwhile
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._env = self._open()

    def _open(self) -> lmdb.Environment:
        try:
            return lmdb.open(str(self.path), map_size=self.map_size, max_dbs=0,
                             readahead=False)
        except lmdb.Error as exc:
            raise StorageError(f"{self.path}: cannot open the delivery store ({exc})") from exc

    def put(self, event_id: bytes, event_index: int, provider: str, sealed: bytes) -> None:
        name = provider.encode()
        value = _HEADER.pack(_STORED, event_index, len(name)) + name + sealed
        with self._lock:
            try:
                with self._env.begin(write=True) as txn:
                    old = txn.get(event_id)
                    if old is not None:
                        state = "was erased" if bytes(old)[0] == _ERASED else "is stored"
                        raise AlreadyDelivered(
                            f"a payload for event {event_id.hex()[:16]} {state} already")
                    txn.put(event_id, value)
            except lmdb.MapFullError as exc:
                raise StoreFull(f"the delivery store is full ({self.map_size} bytes); "
                                "raise delivery.map_size or erase fetched payloads") from exc

    def get(self, event_id: bytes) -> StoredDelivery | bool | None:
        """The stored delivery; ``False`` if it was erased; ``None`` if never delivered."""
        with self._lock, self._env.begin() as txn:
            raw = txn.get(event_id)
            if raw is None:
                return None
            value = bytes(raw)
        state, index, name_len = _HEADER.unpack_from(value)
        if state == _ERASED:
            return False
        start = _HEADER.size
        return StoredDelivery(index, value[start:start + name_len].decode(),
                              value[start + name_len:])

    def erase(self, event_id: bytes) -> int:
        """Delete a stored payload, keep a tombstone, compact the file; bytes erased."""
        with self._lock:
            with self._env.begin(write=True) as txn:
                raw = txn.get(event_id)
                if raw is None or bytes(raw[:1])[0] == _ERASED:
                    return 0
                value = bytes(raw)
                index = _HEADER.unpack_from(value)[1]
                txn.put(event_id, _HEADER.pack(_ERASED, index, 0))
            self._compact()
        return len(value)

    def _compact(self) -> None:
        """Rewrite the environment without free pages and replace the old file."""
        fresh = self.path.with_name(self.path.name + ".compacting")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(mode=0o700)
        self._env.copy(str(fresh), compact=True)
        self._env.close()
        os.replace(fresh / "data.mdb", self.path / "data.mdb")
        shutil.rmtree(fresh, ignore_errors=True)
        self._env = self._open()

    def close(self) -> None:
        with self._lock:
            self._env.close()

"""The witness's durable memory: every checkpoint it cosigned, and the latest one.

SQLite (standard library) in one file, ``synchronous=FULL``: a cosignature leaves the
witness only after the checkpoint that earns it is on disk, so a restart can never make
it cosign two inconsistent checkpoints (tlog-witness: "The witness MUST persist the new
checkpoint before responding"). ``exclusive()`` holds a lock and a write transaction
around check-and-update, which the spec requires to be atomic (its rollback race).
Older cosigned checkpoints are kept too: a later checkpoint for one of those sizes with
another root is caught as a split view even after the witness has moved on.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.checkpoint import Checkpoint
from ledger.errors import CorruptStoreError, StorageError
from ledger.note import Note
from ledger.witness import Cosigned

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cosigned (
    origin TEXT NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL,
    cosigned_at INTEGER NOT NULL, PRIMARY KEY (origin, size));
CREATE TABLE IF NOT EXISTS latest (origin TEXT PRIMARY KEY, size INTEGER NOT NULL);
"""
MAX_SQLITE_INT = 2**63 - 1


class WitnessStore:
    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open the witness state: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def exclusive(self) -> Iterator[WitnessStore]:
        """Check-and-update as one step: one thread and one write transaction at a time."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def latest(self, origin: str) -> Cosigned | None:
        row = self._db.execute(
            "SELECT c.note FROM latest l JOIN cosigned c ON c.origin = l.origin"
            " AND c.size = l.size WHERE l.origin = ?", (origin,)).fetchone()
        if row is None:
            return None
        note = bytes(row[0])
        try:
            checkpoint = Checkpoint.from_text(Note.from_bytes(note).text)
        except Exception as exc:  # our own file: anything unreadable means corruption
            raise CorruptStoreError(f"witness state for {origin} is unreadable: {exc}") from exc
        return Cosigned(checkpoint, note)

    def seen_at(self, origin: str, size: int) -> bytes | None:
        if size > MAX_SQLITE_INT:
            return None  # never stored (see ``record``)
        row = self._db.execute("SELECT note FROM cosigned WHERE origin = ? AND size = ?",
                               (origin, size)).fetchone()
        return None if row is None else bytes(row[0])

    def record(self, cosigned: Cosigned, now: int) -> None:
        """Remember ``cosigned`` as the latest (inside ``exclusive``; committed on exit)."""
        cp = cosigned.checkpoint
        if cp.size > MAX_SQLITE_INT:
            raise StorageError(f"tree size {cp.size} does not fit the witness state")
        self._db.execute(
            "INSERT OR IGNORE INTO cosigned VALUES (?, ?, ?, ?, ?)",
            (cp.origin, cp.size, cp.root_hash, cosigned.note, now))
        self._db.execute(
            "INSERT INTO latest VALUES (?, ?) ON CONFLICT(origin) DO UPDATE SET size ="
            " excluded.size", (cp.origin, cp.size))

    def count(self, origin: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM cosigned WHERE origin = ?",
                               (origin,)).fetchone()
        return int(row[0])

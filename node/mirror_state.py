"""The mirror's local state: what was anchored, and what was sent but not yet acknowledged.

One SQLite file per mirrored source (WAL, synchronous=FULL: a commit is on disk before the
mirror acts on it). It holds no personal data: rows are known by their key pseudonym.

- ``rows``: the latest anchored version of each row (pseudonym, version, commitment,
  ledger index of the anchor record holding it);
- ``records``: every anchor record committed for this source (index, record id);
- ``pending``: anchor records written here *before* they are submitted. After a crash
  they are looked up on the ledger by record id, and marked or submitted again (the same
  signed bytes, so the ledger's duplicate check makes a second commit impossible).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ledger.anchors import Row
from ledger.errors import LedgerError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    pseudonym BLOB PRIMARY KEY, version TEXT NOT NULL, commitment BLOB NOT NULL,
    record_index INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (record_index INTEGER PRIMARY KEY, record_id BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending (record_id BLOB PRIMARY KEY, envelope BLOB NOT NULL)
    WITHOUT ROWID;
"""
LOOKUP_CHUNK = 900
"""Pseudonyms per ``IN (...)`` query (SQLite allows 999 parameters in older builds)."""


class StateError(LedgerError):
    """The state file belongs to another source or network, or cannot be used."""


class MirrorState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # the mirror's reader and ack threads share the file
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open mirror state {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MirrorState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bind(self, identity: dict[str, str]) -> None:
        """Tie the file to one source/table/network/agency; refuse any other."""
        stored = dict(self._db.execute("SELECT name, value FROM meta"))
        for name, value in identity.items():
            if name in stored and stored[name] != value:
                raise StateError(f"{self.path} is the state of {name} {stored[name]!r},"
                                 f" not {value!r}; use another --state file")
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", identity.items())

    # --- lookups -------------------------------------------------------------------------

    def commitments(self, pseudonyms: Sequence[bytes]) -> dict[bytes, bytes]:
        """Anchored commitment by pseudonym, for those of ``pseudonyms`` that have one."""
        found: dict[bytes, bytes] = {}
        for i in range(0, len(pseudonyms), LOOKUP_CHUNK):
            chunk = pseudonyms[i:i + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                found.update(self._db.execute(
                    f"SELECT pseudonym, commitment FROM rows WHERE pseudonym IN ({marks})",
                    chunk).fetchall())
        return found

    def record_indices(self) -> list[int]:
        return [i for (i,) in self._db.execute(
            "SELECT record_index FROM records ORDER BY record_index")]

    def rows(self) -> Iterator[tuple[bytes, str, bytes, int]]:
        """Every anchored row: (pseudonym, version, commitment, record index)."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT pseudonym, version, commitment, record_index FROM rows")
        yield from cursor

    def pending(self) -> list[bytes]:
        return [env for (env,) in self._db.execute("SELECT envelope FROM pending")]

    # --- updates (each one durable transaction) -----------------------------------------

    def add_pending(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """(record id, envelope) of records about to be sent, in one synced transaction."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO pending VALUES (?, ?)", records)

    def drop_pending(self, record_id: bytes) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM pending WHERE record_id = ?", (record_id,))

    def mark_anchored(self, acks: Sequence[tuple[bytes, int, Iterable[Row]]]) -> None:
        """Each (record id, ledger index, rows): the record at that index holds the rows;
        they become the anchored versions (unless a later record already anchored a row:
        then that one stays). One synced transaction for all."""
        if not acks:
            return
        with self._lock, self._db:
            self._db.execute("BEGIN")
            for record_id, index, rows in acks:
                self._db.executemany(
                    "INSERT INTO rows VALUES (?, ?, ?, ?) ON CONFLICT(pseudonym) DO UPDATE SET"
                    " version = excluded.version, commitment = excluded.commitment,"
                    " record_index = excluded.record_index"
                    " WHERE excluded.record_index >= rows.record_index",
                    ((nym, version, commit, index) for nym, version, commit in rows))
                self._db.execute("INSERT OR REPLACE INTO records VALUES (?, ?)",
                                 (index, record_id))
                self._db.execute("DELETE FROM pending WHERE record_id = ?", (record_id,))

"""The subject index: subject pseudonym -> indices of the sharing events about it.

Why an index rather than a scan: a data-subject report must not cost a pass over the
whole ledger (millions of records) per request. The index is written in the same LMDB
transaction as the block (``Ledger.commit_block``), so it is exactly as durable as the
records and can never be ahead of or behind them. It holds nothing the ledger does not:
keys are ``pseudonym || index`` (u64 big-endian), values empty, so one prefix range read
lists a subject's events in ledger order.

The index is a hint, not evidence: a client verifies every record it names (receipt and
pseudonym) and can prove completeness by a verified scan (``node/subject_report.py``).
A store written before the index existed is indexed when opened (``catch_up``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import DecodeError

from ledger.storage import Storage
from proto import ledger_pb2

SUBJECTS_DB = b"subjects"
_INDEXED = b"subjects.size"  # in meta: records [0, size) are indexed
_U64 = struct.Struct(">Q")
MAX_PSEUDONYM_BYTES = 64
CATCH_UP_CHUNK = 10_000


def event_subject(envelope: bytes) -> bytes | None:
    """The subject pseudonym of a sharing-event envelope, or None for any other record."""
    try:
        body = ledger_pb2.RecordBody.FromString(ledger_pb2.Envelope.FromString(envelope).body)
    except DecodeError:
        return None  # committed records were verified; this is only defensive
    if body.WhichOneof("kind") != "sharing_event":
        return None
    pseudonym = body.sharing_event.subject_pseudonym
    return pseudonym if 0 < len(pseudonym) <= MAX_PSEUDONYM_BYTES else None


class SubjectIndex:
    """Reads and writes of the ``subjects`` sub-database."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._db = storage.db(SUBJECTS_DB)
        self._meta = storage.db(b"meta")

    def add(self, txn: Any, first: int, envelopes: Iterable[bytes]) -> None:
        """Index the records ``first, first+1, ...`` inside the caller's write transaction."""
        end = first
        for end, env in enumerate(envelopes, start=first + 1):
            pseudonym = event_subject(env)
            if pseudonym is not None:
                txn.put(pseudonym + _U64.pack(end - 1), b"", db=self._db)
        txn.put(_INDEXED, _U64.pack(end), db=self._meta)

    def indexed_size(self) -> int:
        with self.storage.read() as txn:
            raw = txn.get(_INDEXED, db=self._meta)
        return 0 if raw is None else int(_U64.unpack(raw)[0])

    def catch_up(self, size: int, record: Any) -> None:
        """Index records ``[indexed_size, size)``, read with ``record(i)`` (older stores)."""
        done = self.indexed_size()
        while done < size:
            stop = min(size, done + CATCH_UP_CHUNK)
            with self.storage.write() as txn:
                self.add(txn, done, (record(i) for i in range(done, stop)))
            done = stop

    def lookup(self, pseudonym: bytes, from_index: int, limit: int) -> tuple[list[int], bool]:
        """Up to ``limit`` indices >= ``from_index`` for ``pseudonym``; and whether more."""
        found: list[int] = []
        with self.storage.read() as txn:
            cursor = txn.cursor(db=self._db)
            if not cursor.set_range(pseudonym + _U64.pack(from_index)):
                return found, False
            for key in cursor.iternext(keys=True, values=False):
                if not bytes(key).startswith(pseudonym):
                    break
                if len(key) != len(pseudonym) + 8:
                    continue  # a longer pseudonym sharing this prefix
                if len(found) == limit:
                    return found, True
                found.append(_U64.unpack(bytes(key[-8:]))[0])
        return found, False

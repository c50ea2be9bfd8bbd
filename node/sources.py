"""Authoritative tables read through DB-API 2.0: SQLite (stdlib) and PostgreSQL (psycopg 3).

The mirror only ever reads: one ``SELECT`` of the key, version and selected columns,
streamed in batches (a server-side cursor on PostgreSQL, so a million-row table is never
held in memory). Driver exceptions are wrapped in ``SourceError`` naming what failed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError

FETCH_ROWS = 5_000
"""Rows per fetch from the source: large enough to amortise the driver's per-call cost."""


class SourceError(LedgerError):
    """The authoritative database could not be opened or read as asked."""


@dataclass(frozen=True)
class TableSpec:
    """What to read: the table, its key and version columns, and the committed columns."""

    table: str
    key_column: str
    version_column: str
    columns: tuple[str, ...] = ()
    """Columns the commitment covers, in order; empty = every column of the table."""


def quote(identifier: str) -> str:
    """A SQL identifier (``schema.table`` allowed), double-quoted, for both dialects."""
    if not identifier or "\x00" in identifier:
        raise SourceError(f"bad identifier {identifier!r}")
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


class Source:
    """One read-only connection to an authoritative database."""

    def __init__(self, conn: Any, dsn: str, server_cursor: bool) -> None:
        self._conn = conn
        self.dsn = dsn
        self._server_cursor = server_cursor

    @classmethod
    def open(cls, dsn: str) -> Source:
        """``postgresql://...`` (or ``postgres://``) or ``sqlite:PATH`` / a SQLite file path."""
        if dsn.startswith(("postgresql://", "postgres://")):
            return cls._open_postgres(dsn)
        path = dsn.removeprefix("sqlite:")
        if not Path(path).is_file():
            raise SourceError(f"no SQLite database at {path} (for PostgreSQL give a"
                              " postgresql://user@host:port/db DSN)")
        try:
            conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise SourceError(f"cannot open SQLite database {path}: {exc}") from exc
        return cls(conn, dsn, server_cursor=False)

    @classmethod
    def _open_postgres(cls, dsn: str) -> Source:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise SourceError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from exc
        try:
            conn = psycopg.connect(dsn, autocommit=False)
        except psycopg.Error as exc:
            raise SourceError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc
        conn.read_only = True
        return cls(conn, dsn, server_cursor=True)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, sql: str, what: str, named: bool = False) -> Any:
        cursor = self._conn.cursor(name="shadowledger_mirror") if named else self._conn.cursor()
        try:
            cursor.execute(sql)
        except Exception as exc:
            self._rollback()
            raise SourceError(f"{what}: {str(exc).strip()}") from exc
        return cursor

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):  # the original error is the one worth reporting
            self._conn.rollback()

    def table_columns(self, table: str) -> tuple[str, ...]:
        cursor = self._execute(f"SELECT * FROM {quote(table)} WHERE 1 = 0",
                               f"cannot read table {table!r}")
        names = tuple(d[0] for d in cursor.description)
        cursor.close()
        return names

    def resolve(self, spec: TableSpec) -> TableSpec:
        """Check every named column exists; fill in all columns when none were chosen."""
        present = self.table_columns(spec.table)
        wanted = spec.columns or present
        for column in (spec.key_column, spec.version_column, *wanted):
            if column not in present:
                raise SourceError(f"table {spec.table!r} has no column {column!r}"
                                  f" (it has: {', '.join(present)})")
        return TableSpec(spec.table, spec.key_column, spec.version_column, tuple(wanted))

    def count(self, table: str) -> int:
        cursor = self._execute(f"SELECT COUNT(*) FROM {quote(table)}",
                               f"cannot count rows of {table!r}")
        (n,) = cursor.fetchone()
        cursor.close()
        return int(n)

    def rows(self, spec: TableSpec) -> Iterator[Sequence[Sequence[Any]]]:
        """Batches of rows ``(key, version, *columns)``; no order is assumed."""
        names = ", ".join(quote(c) for c in (spec.key_column, spec.version_column, *spec.columns))
        cursor = self._execute(f"SELECT {names} FROM {quote(spec.table)}",
                               f"cannot read table {spec.table!r}", named=self._server_cursor)
        try:
            while True:
                batch = cursor.fetchmany(FETCH_ROWS)
                if not batch:
                    return
                yield batch
        finally:
            cursor.close()
            self._rollback()  # ends the read transaction (PostgreSQL)

"""The mirror's local state file, the SQLite source reader and the scan process (no
network)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledger.anchors import RowHasher, RowKeys
from node.mirror_state import MirrorState, StateError
from node.scan import DIGESTS, ScanProcess
from node.sources import Source, SourceError, TableSpec, quote

IDENTITY = {"network": "n", "agency": "a", "source": "s", "table": "t"}


def _row(n: int, version: str = "1") -> tuple[bytes, str, bytes]:
    return bytes([n]) * 32, version, bytes([n + 100]) * 32


def test_state_is_bound_to_one_source(tmp_path: Path) -> None:
    with MirrorState(tmp_path / "s.state") as state:
        state.bind(IDENTITY)
        state.bind(IDENTITY)
        with pytest.raises(StateError, match="source 's', not 'other'"):
            state.bind({**IDENTITY, "source": "other"})


def test_pending_then_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    with MirrorState(path) as state:
        state.add_pending([(b"r1", b"envelope-1"), (b"r2", b"envelope-2")])
    with MirrorState(path) as state:  # survives a restart
        assert sorted(state.pending()) == [b"envelope-1", b"envelope-2"]
        state.mark_anchored([(b"r1", 7, [_row(1), _row(2)])])
        assert state.pending() == [b"envelope-2"]
        assert state.commitments([_row(1)[0], _row(3)[0]]) == {_row(1)[0]: _row(1)[2]}
        assert state.record_indices() == [7]


def test_a_later_record_wins_whatever_order_acks_are_stored_in(tmp_path: Path) -> None:
    with MirrorState(tmp_path / "s.state") as state:
        newer = (_row(1)[0], "2", b"n" * 32)
        state.mark_anchored([(b"r9", 9, [newer])])
        state.mark_anchored([(b"r3", 3, [_row(1)])])  # e.g. settled late after a crash
        assert list(state.rows()) == [(*newer, 9)]
        assert state.record_indices() == [3, 9]


def test_lookups_beyond_one_query(tmp_path: Path) -> None:
    with MirrorState(tmp_path / "s.state") as state:
        rows = [(i.to_bytes(32, "big"), "1", b"c" * 32) for i in range(2500)]
        state.mark_anchored([(b"r", 0, rows)])
        assert len(state.commitments([r[0] for r in rows])) == 2500


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE "odd ""name""" (id INTEGER, v INTEGER, x TEXT)')
        conn.executemany('INSERT INTO "odd ""name""" VALUES (?, ?, ?)',
                         [(i, 1, str(i)) for i in range(12_000)])
    return path


def test_sqlite_source_reads_every_row_in_batches(db: Path) -> None:
    with Source.open(f"sqlite:{db}") as source:
        spec = source.resolve(TableSpec('odd "name"', "id", "v"))
        assert spec.columns == ("id", "v", "x")
        assert source.count(spec.table) == 12_000
        batches = list(source.rows(spec))
        assert len(batches) == 3 and sum(map(len, batches)) == 12_000


def test_source_errors_say_what_is_wrong(db: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no SQLite database at"):
        Source.open(str(tmp_path / "missing.db"))
    with Source.open(str(db)) as source:
        with pytest.raises(SourceError, match="cannot read table 'nope'"):
            source.resolve(TableSpec("nope", "id", "v"))
        with pytest.raises(SourceError, match="has no column 'w'"):
            source.resolve(TableSpec('odd "name"', "id", "w"))
    with pytest.raises(SourceError, match="cannot connect to PostgreSQL"):
        Source.open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_identifiers_are_quoted() -> None:
    assert quote('public.t"x') == '"public"."t""x"'
    with pytest.raises(SourceError):
        quote("")


def test_scan_process_packs_what_the_hasher_computes(db: Path) -> None:
    keys = RowKeys.derive(bytes(32), "s")
    with Source.open(str(db)) as source:
        spec = source.resolve(TableSpec('odd "name"', "id", "v", ("x",)))
        expected = [d for batch in source.rows(spec)
                    for d in RowHasher(keys, spec.columns).digest_many(batch)]
    with ScanProcess(str(db), spec, keys) as scan:
        got = [(k, packed[DIGESTS * i:DIGESTS * i + 32], v,
                packed[DIGESTS * i + 32:DIGESTS * (i + 1)])
               for packed, ks, vs in scan.batches()
               for i, (k, v) in enumerate(zip(ks, vs, strict=True))]
    assert got == expected and len(got) == 12_000


def test_scan_process_reports_a_failure(tmp_path: Path) -> None:
    spec = TableSpec("t", "id", "v", ("x",))
    with ScanProcess(str(tmp_path / "gone.db"), spec, RowKeys.derive(bytes(32), "s")) as scan, \
            pytest.raises(SourceError, match="reading 't' failed: no SQLite database at"):
        list(scan.batches())

"""`shadowledger mirror` / `reconcile` as users run them: a real 4-node cluster on
127.0.0.1, a SQLite file and a real PostgreSQL server, the CLI as subprocesses."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.anchors import RowKeys
from ledger.records import Envelope, decode_body
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.postgres import postgres_server

pytestmark = pytest.mark.timeout(900)
EXE = [sys.executable, "-m", "node.cli"]
AGENCY = "tax-agency"
KILL_ROWS, KILL_BATCH = 60_000, 20
"""3,000 records: long enough a run that the kill lands in the middle even on a fast
machine (acknowledgements reach the state at least every 0.5 s)."""


@dataclass
class Table:
    """One authoritative table, in SQLite or PostgreSQL, driven through DB-API."""

    dsn: str
    name: str
    backend: str

    def connect(self) -> Any:
        if self.backend == "sqlite":
            return sqlite3.connect(self.dsn)
        import psycopg

        return psycopg.connect(self.dsn)

    def run(self, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        if self.backend == "postgres":
            sql = sql.replace("?", "%s")
        conn = self.connect()
        try:
            cursor = conn.cursor()
            if rows is None:
                cursor.execute(sql.format(t=self.name))
            else:
                cursor.executemany(sql.format(t=self.name), rows)
            conn.commit()
        finally:
            conn.close()

    def create(self, n: int) -> None:
        real = "REAL" if self.backend == "sqlite" else "DOUBLE PRECISION"
        self.run(f"CREATE TABLE {{t}} (id INTEGER PRIMARY KEY, version INTEGER, name TEXT,"
                 f" score {real}, born TEXT)")
        self.insert(range(n))

    def insert(self, ids: Iterator[int] | range | list[int]) -> None:
        self.run("INSERT INTO {t} VALUES (?, ?, ?, ?, ?)",
                 [(i, 1, f"person {i}", i / 7, f"19{i % 100:02d}-01-01") for i in ids])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("mirror") / "net") as c:
        yield c


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Table:
    name = f"people_{request.node.name.split('[')[0][-12:]}"
    if request.param == "sqlite":
        return Table(str(tmp_path / "authority.db"), name, "sqlite")
    return Table(request.getfixturevalue("pg_dsn"), name, "postgres")


def _cli(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _options(cluster: Cluster, table: Table, source: str, tmp: Path) -> list[str | Path]:
    return ["--db", table.dsn, "--table", table.name, "--key-column", "id",
            "--version-column", "version", "--columns", "name,score,born",
            "--source", source, "--profile", cluster.profile_path(AGENCY),
            "--secret", tmp / "mirror.secret", "--state", tmp / "mirror.state"]


def _mirror(options: list[str | Path], *extra: str) -> dict[str, Any]:
    done = _cli("mirror", *options, "--json", *extra)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _verify_receipt(cluster: Cluster, receipt: str | Path, record: str | Path) -> None:
    done = _cli("audit", "verify-receipt", receipt, "--record", record,
                "--trust", cluster.net.genesis_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: record (")


def test_mirror_then_reconcile_finds_exactly_the_changes(
        cluster: Cluster, table: Table, tmp_path: Path) -> None:
    source = f"registry/{table.backend}-people"
    options = _options(cluster, table, source, tmp_path)
    table.create(1200)

    first = _mirror(options, "--batch-rows", "100")
    assert (first["rows_read"], first["rows_new"], first["rows_changed"]) == (1200, 1200, 0)
    assert first["records"] == 12
    again = _mirror(options)
    assert (again["rows_read"], again["rows_new"], again["rows_changed"], again["records"]) \
        == (1200, 0, 0, 0)

    table.run("UPDATE {t} SET version = 2, name = 'renamed' WHERE id IN (5, 6, 7)")
    table.run("DELETE FROM {t} WHERE id IN (10, 11)")
    table.insert([5000, 5001])
    incremental = _mirror(options)
    assert (incremental["rows_new"], incremental["rows_changed"], incremental["records"]) \
        == (2, 3, 1)

    table.run("UPDATE {t} SET version = 3, score = 0.5 WHERE id = 20")
    table.run("UPDATE {t} SET name = 'silently edited' WHERE id = 21")  # same version
    table.run("DELETE FROM {t} WHERE id = 30")
    table.insert([6000])
    evidence = tmp_path / "evidence"
    done = _cli("reconcile", *options, "--json", "--commit", "--evidence", evidence)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    keys = RowKeys.derive((tmp_path / "mirror.secret").read_bytes(), source)
    found = report["findings"]
    assert report["rows_checked"] == 1200 + 2 - 2 + 1 - 1
    assert report["counts"] == {"changed": 2, "deleted": 3, "unanchored": 1,
                                "state-mismatch": 0}
    assert {(f["key"], f["anchored_version"], f["current_version"]) for f in found["changed"]} \
        == {("20", "1", "3"), ("21", "1", "1")}
    assert {f["key_pseudonym"] for f in found["deleted"]} \
        == {keys.pseudonym(k).hex() for k in ("10", "11", "30")}
    assert [(f["key"], f["current_version"]) for f in found["unanchored"]] == [("6000", "1")]

    for finding in found["changed"] + found["deleted"]:  # the evidence verifies offline
        _verify_receipt(cluster, finding["receipt"], finding["record"])
        body = decode_body(Envelope.from_bytes(Path(finding["record"]).read_bytes()).body)
        rows = {r.key_pseudonym.hex(): r.version for r in body.anchor.rows}
        assert rows[finding["key_pseudonym"]] == finding["anchored_version"]

    index = report["reconciliation_record_index"]
    committed = evidence / f"reconciliation-{index}"
    _verify_receipt(cluster, committed.with_suffix(".tlog-proof"),
                    committed.with_suffix(".envelope"))
    record = decode_body(Envelope.from_bytes(committed.with_suffix(".envelope").read_bytes()).body)
    assert record.agency == AGENCY
    r = record.reconciliation
    assert (r.source, r.rows_checked, r.rows_changed, r.rows_deleted, r.rows_unanchored) \
        == (source, 1200, 2, 3, 1)
    assert r.findings_commitment.hex() == report["findings_commitment"]

    text = _cli("reconcile", *options, "--evidence", tmp_path / "evidence2")
    assert text.returncode == 0, text.stderr
    assert "changed since anchoring: 2" in text.stdout
    assert "key 21, anchored version 1 in record" in text.stdout


def _ledger_rows(cluster: Cluster, source: str) -> Counter[bytes]:
    """How often each key pseudonym of ``source`` appears in the whole ledger."""
    seen: Counter[bytes] = Counter()
    with cluster.client(AGENCY) as client:
        size = client.checkpoint().size
        for committed in client.watch(0):
            body = decode_body(Envelope.from_bytes(committed.envelope).body)
            if body.WhichOneof("kind") == "anchor" and body.anchor.source == source:
                seen.update(row.key_pseudonym for row in body.anchor.rows)
            if committed.index + 1 >= size:
                break
    return seen


def _anchored_records(state: Path) -> int:
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
            n: int = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            return n
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_killed_mirror_rerun_anchors_nothing_twice_and_misses_nothing(
        cluster: Cluster, tmp_path: Path) -> None:
    table = Table(str(tmp_path / "authority.db"), "people", "sqlite")
    table.create(KILL_ROWS)
    source = "registry/killed-mid-run"
    options = _options(cluster, table, source, tmp_path)
    proc = subprocess.Popen(
        [*EXE, "mirror", *map(str, options), "--batch-rows", str(KILL_BATCH)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while _anchored_records(tmp_path / "mirror.state") < 20:
            assert proc.poll() is None, "the mirror ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    before = _anchored_records(tmp_path / "mirror.state")
    assert before < KILL_ROWS // KILL_BATCH, "killed too late: the run had finished"

    rerun = _mirror(options, "--batch-rows", str(KILL_BATCH))
    assert rerun["rows_read"] == KILL_ROWS
    assert rerun["recovered"] > 0  # records sent but not yet acknowledged when killed
    assert rerun["rows_new"] <= KILL_ROWS - before * KILL_BATCH  # acknowledged: not re-sent

    keys = RowKeys.derive((tmp_path / "mirror.secret").read_bytes(), source)
    seen = _ledger_rows(cluster, source)
    assert set(seen) == {keys.pseudonym(str(i)) for i in range(KILL_ROWS)}  # nothing missed
    assert max(seen.values()) == 1  # nothing twice

    done = _cli("reconcile", *options, "--json", "--evidence", tmp_path / "evidence")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"] == {
        "changed": 0, "deleted": 0, "unanchored": 0, "state-mismatch": 0}


def test_bad_input_is_refused_with_a_clear_message(cluster: Cluster, tmp_path: Path) -> None:
    table = Table(str(tmp_path / "authority.db"), "people", "sqlite")
    table.create(3)
    options = _options(cluster, table, "registry/bad-input", tmp_path)
    wrong = [("nope" if o == "version" else o) for o in options]
    done = _cli("mirror", *wrong)
    assert done.returncode == 2
    assert "table 'people' has no column 'nope' (it has: id, version, name, score, born)" \
        in done.stderr
    done = _cli("reconcile", *options)
    assert done.returncode == 2 and "no mirror state at" in done.stderr
    auditor = [cluster.profile_path("audit-office") if o == cluster.profile_path(AGENCY)
               else o for o in options]
    done = _cli("mirror", *auditor)
    assert done.returncode == 2 and "cannot sign anchors" in done.stderr
    done = _cli("mirror", *options, "--batch-rows", "0")
    assert done.returncode == 2 and "--batch-rows must be 1..2000" in done.stderr


def _on_terminal(*args: str | Path) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; (exit code, what the terminal got)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([*EXE, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_only(cluster: Cluster, tmp_path: Path) -> None:
    table = Table(str(tmp_path / "authority.db"), "people", "sqlite")
    table.create(2000)
    options = _options(cluster, table, "registry/progress", tmp_path)
    code, shown = _on_terminal("mirror", *options)
    assert code == 0 and "mirror registry/progress" in shown and "2.00k/2.00k" in shown
    code, shown = _on_terminal("reconcile", *options, "--evidence", tmp_path / "ev")
    assert code == 0 and "verify anchors" in shown and "reconcile registry/progress" in shown
    code, shown = _on_terminal("reconcile", *options, "--quiet", "--evidence", tmp_path / "ev")
    assert code == 0 and shown == ""
    piped = _cli("mirror", *options)  # stderr is a pipe: no bar
    assert piped.returncode == 0 and piped.stderr == ""

"""`shadowledger explorer --data-dir`: a separate process serving a node's store read-only,
following blocks the writer commits while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledger.export_writer import export_ledger
from ledger.genesis import TrustRoot
from ledger.receipts import verify_receipt
from node.demo import make_network
from tests.explorer.http import fetch, get_json
from tests.explorer.ledger_fixture import BLOCK_TIMES, build, commit, sharing

EXE = [sys.executable, "-m", "node.cli", "explorer"]


@contextmanager
def explorer_process(*args: str | Path) -> Iterator[str]:
    proc = subprocess.Popen([*EXE, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("explorer: http://127.0.0.1:"), (line, proc.stderr.read()
                                                                 if proc.stderr else "")
        yield line.split()[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_serves_a_node_store_read_only_and_follows_new_blocks(tmp_path: Path) -> None:
    built, ledger = build(tmp_path / "net")
    try:
        data, genesis = tmp_path / "net" / "node", tmp_path / "net" / "genesis.json"
        before = (data / "data.mdb").read_bytes()
        with explorer_process("--data-dir", data, "--genesis", genesis,
                              "--listen", "127.0.0.1:0") as url:
            assert get_json(url, "/api/status")["height"] == 5
            assert get_json(url, "/api/checkpoint")["final"] is True
            assert (data / "data.mdb").read_bytes() == before  # nothing written
            assert fetch(url, "/api/status", method="POST").status == 405
            commit(built, ledger, [sharing(built.net, "tax-agency", "statistics-office")],
                   BLOCK_TIMES[-1] + 2000)  # the writer goes on while the explorer reads
            assert get_json(url, "/api/status")["height"] == 6
            new = len(built.envelopes) - 1
            record = get_json(url, f"/api/records/{new}")
            assert record["fields"]["recipient"] == "statistics-office"
            receipt = fetch(url, f"/api/records/{new}/receipt").body
        result = verify_receipt(receipt, built.envelopes[new].raw, TrustRoot.load(genesis))
        assert result.index == new and result.checkpoint.size == new + 1
    finally:
        ledger.storage.close()


def test_serves_a_static_export(tmp_path: Path) -> None:
    built, ledger = build(tmp_path / "net")
    try:
        export_ledger(ledger, tmp_path / "export")
    finally:
        ledger.storage.close()
    genesis = tmp_path / "net" / "genesis.json"
    with explorer_process(tmp_path / "export", "--genesis", genesis,
                          "--listen", "127.0.0.1:0") as url:
        status = get_json(url, "/api/status")
        assert status["height"] == 5 and status["tree_size"] == len(built.envelopes)
        assert get_json(url, "/api/checkpoint")["final"] is True
        last = len(built.envelopes) - 1
        assert get_json(url, f"/api/records/{last}")["index"] == last
        receipt = fetch(url, f"/api/records/{last}/receipt").body
    result = verify_receipt(receipt, built.envelopes[last].raw, TrustRoot.load(genesis))
    assert result.index == last
    other = make_network(tmp_path / "other").genesis_bytes
    (tmp_path / "other.json").write_bytes(other)
    done = subprocess.run([*EXE, str(tmp_path / "export"), "--genesis",
                           str(tmp_path / "other.json")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "another network" in done.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    ((), 2, "give either an export folder DIR or --data-dir"),
    (("some/export",), 2, "DIR needs --genesis"),
    (("{tmp}/none", "--genesis", "{good}"), 3, "none/shadowledger/export.json"),
    (("--data-dir", "x"), 2, "--data-dir needs --genesis"),
    (("--data-dir", "{tmp}/none", "--genesis", "{good}"), 3, "no ledger store here"),
    (("--data-dir", "{tmp}", "--genesis", "{genesis}"), 1, "genesis format is None"),
    (("--data-dir", "{tmp}", "--genesis", "{tmp}/missing.json"), 3, "missing.json"),
])
def test_bad_arguments_say_what_is_wrong(tmp_path: Path, args: tuple[str, ...], code: int,
                                         message: str) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_bytes(b"{}")
    good = make_network(tmp_path / "net").genesis_bytes
    (tmp_path / "good.json").write_bytes(good)
    argv = [a.format(tmp=tmp_path, genesis=genesis, good=tmp_path / "good.json") for a in args]
    done = subprocess.run([*EXE, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert message in done.stderr

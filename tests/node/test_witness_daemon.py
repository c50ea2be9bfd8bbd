"""The witness daemon's parts with their real storage and HTTP: durable state across
restarts, split-view alarms, the HTTP answers, configs and ``witness init``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ledger.checkpoint import Checkpoint
from ledger.genesis import Agency, Genesis, Validator
from ledger.splitview import verify_split_view
from ledger.witness import AddCheckpoint, parse_size_body, verify_response
from node.config import ConfigError, load_config
from node.logging_setup import get_logger
from node.witness.alarms import Alarms
from node.witness.config import WitnessConfig, WitnessSection, load_witness_config
from node.witness.server import Witness, WitnessHTTPServer
from node.witness.store import WitnessStore
from node.witnessing import WitnessConnection
from tests.ledger.test_witness import (
    FORK,
    NOW,
    ORIGIN,
    TREE,
    TRUST,
    TRUST_ROOT,
    VALIDATORS,
    WITNESS,
    note,
    request,
)

LOG = get_logger("test")


def open_witness(state: Path) -> tuple[Witness, CollectorRegistry]:
    registry = CollectorRegistry()
    alarms = Alarms(state / "alarms", WITNESS.verifier.to_vkey(), registry, LOG)
    store = WitnessStore(state / "witness.sqlite")
    return Witness(TRUST, WITNESS, store, alarms, registry, LOG), registry


def test_state_survives_a_restart_and_a_split_view_after_it_is_caught(tmp_path: Path) -> None:
    witness, _ = open_witness(tmp_path)
    assert witness.add_checkpoint(request(0, 10), NOW).status == 200
    assert witness.add_checkpoint(request(10, 30), NOW).status == 200
    witness.store.close()

    witness, registry = open_witness(tmp_path)  # a new process, same folder
    stale = witness.add_checkpoint(request(0, 12), NOW)
    assert stale.status == 409 and parse_size_body(stale.body) == 30
    split = witness.add_checkpoint(AddCheckpoint(30, (), note(30, FORK)).to_bytes(), NOW)
    assert split.status == 409 and split.accept is None
    files = list((tmp_path / "alarms").glob("same-size-*.json"))
    assert len(files) == 1
    verdict = verify_split_view(files[0].read_bytes(), TRUST_ROOT)
    assert verdict.conclusive and verdict.seen.size == 30
    assert json.loads(files[0].read_text())["witness"] == WITNESS.verifier.to_vkey()
    text = generate_latest(registry).decode()
    assert 'shadowledger_witness_alarms_total{kind="same-size"} 1.0' in text
    assert witness.add_checkpoint(request(30, 64), NOW).status == 200  # the real log goes on
    latest = witness.store.latest(ORIGIN)
    assert latest is not None and latest.checkpoint.size == 64
    witness.store.close()


def test_concurrent_submissions_never_roll_back(tmp_path: Path) -> None:
    """tlog-witness: check and update are atomic, so size N after N+K cannot be cosigned."""
    witness, _ = open_witness(tmp_path)
    witness.add_checkpoint(request(0, 8), NOW)
    answers: list[int] = []

    def submit(size: int) -> None:
        answers.append(witness.add_checkpoint(request(8, size), NOW).status)

    threads = [threading.Thread(target=submit, args=(s,)) for s in range(9, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latest = witness.store.latest(ORIGIN)
    assert answers.count(200) == 1 and answers.count(409) == 31
    assert latest is not None and latest.checkpoint.size > 8
    witness.store.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Witness]]:
    witness, registry = open_witness(tmp_path)
    http = WitnessHTTPServer(("127.0.0.1", 0), witness, registry)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}", witness
    finally:
        http.shutdown()
        http.server_close()
        witness.store.close()


def test_http_answers(server: tuple[str, Witness]) -> None:
    url, _ = server
    conn = WitnessConnection(url)
    status, body = conn.post(request(0, 5))
    assert status == 200
    assert verify_response(Checkpoint(ORIGIN, 5, TREE.root(5)), body, WITNESS.verifier)
    status, body = conn.post(request(0, 6))  # same keep-alive connection
    assert status == 409 and parse_size_body(body) == 5
    status, body = conn.post(b"garbage")
    assert status == 400 and b"malformed" in body
    conn.close()
    import http.client

    raw = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=5)
    raw.request("GET", "/metrics")
    metrics = raw.getresponse().read().decode()
    assert 'shadowledger_witness_requests_total{status="409"} 1.0' in metrics
    raw.request("POST", "/add-checkpoint", b"x" * 10, {"Content-Length": "99999999"})
    assert raw.getresponse().status == 400
    raw.close()


# --- configs and witness init ----------------------------------------------------------------


def _genesis(tmp_path: Path) -> Path:
    genesis = Genesis(ORIGIN, tuple(Validator(k.verifier, 1, "tax-agency") for k in VALIDATORS),
                      (Agency("tax-agency", ()),))
    path = tmp_path / "genesis.json"
    path.write_bytes(genesis.to_bytes())
    return path


def test_witness_init_then_config_loads(tmp_path: Path) -> None:
    genesis = _genesis(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", "witness", "init", "--dir", str(tmp_path / "w"),
         "--name", "audit-office/w1", "--genesis", str(genesis), "--listen", "127.0.0.1:7399"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    vkey = (tmp_path / "w" / "witness.vkey").read_text().strip()
    assert vkey in done.stdout and vkey.startswith("audit-office/w1+")
    assert (tmp_path / "w" / "witness.skey").stat().st_mode & 0o077 == 0
    config = load_witness_config(tmp_path / "w" / "witness.toml")
    assert config.witness.listen == "127.0.0.1:7399"
    assert config.witness.genesis == genesis.resolve()
    assert config.database == tmp_path / "w" / "state" / "witness.sqlite"
    again = subprocess.run(
        [sys.executable, "-m", "node.cli", "witness", "init", "--dir", str(tmp_path / "w"),
         "--name", "x", "--genesis", str(genesis)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists" in again.stderr


def test_witness_config_defaults_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "witness.toml"
    path.write_text("")
    config = load_witness_config(path, check_files=False)
    assert config.witness.listen == WitnessSection().listen
    assert config.witness.state_dir == tmp_path / "state"
    assert isinstance(config, WitnessConfig)
    path.write_text('[witness]\nlisten = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"witness\.listen"):
        load_witness_config(path, check_files=False)
    path.write_text('[witness]\nkeys = "x"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_witness_config(path, check_files=False)
    path.write_text("")
    with pytest.raises(ConfigError, match=r"witness\.key"):
        load_witness_config(path)


NODE = """
[node]
name = "tax-agency"
[keys]
tls_cert = "node.crt"
tls_key = "node.key"
validator_key = "v.skey"
"""


@pytest.mark.parametrize(("table", "message"), [
    ('url = "ftp://x:1"\nvkey = "{vkey}"', "witnesses[0].url"),
    ('url = "http://127.0.0.1:7380"\nvkey = "nonsense"', "witnesses[0].vkey"),
    ('url = "http://127.0.0.1:7380"\nvkey = "{validator}"', "type 0x04"),
    ('url = "http://127.0.0.1:7380"', "witnesses[0].vkey: is required"),
])
def test_node_witness_config_errors(tmp_path: Path, table: str, message: str) -> None:
    text = table.format(vkey=WITNESS.verifier.to_vkey(),
                        validator=VALIDATORS[0].verifier.to_vkey())
    path = tmp_path / "node.toml"
    path.write_text(NODE + "[[witnesses]]\n" + text + "\n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path, check_files=False)


def test_node_witness_config(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(NODE + f'[[witnesses]]\nurl = "http://127.0.0.1:7380"\n'
                           f'vkey = "{WITNESS.verifier.to_vkey()}"\n')
    config = load_config(path, check_files=False)
    assert [w.url for w in config.witnesses] == ["http://127.0.0.1:7380"]
    assert [w.vkey for w in config.witnesses] == [WITNESS.verifier.to_vkey()]


def test_client_profile_witness_quorum(tmp_path: Path) -> None:
    from node.config import load_client_profile

    path = tmp_path / "client.toml"
    base = ('[client]\nagency = "tax-agency"\naddress = "127.0.0.1:7100"\n'
            'genesis = "g.json"\ntls_cert = "c.crt"\ntls_key = "c.key"\n')
    path.write_text(base)
    assert load_client_profile(path, check_files=False).witness_quorum == 0
    path.write_text(base + "witness_quorum = 2\n")
    assert load_client_profile(path, check_files=False).witness_quorum == 2
    path.write_text(base + "witness_quorum = -1\n")
    with pytest.raises(ConfigError, match=r"client\.witness_quorum: must be at least 0"):
        load_client_profile(path, check_files=False)

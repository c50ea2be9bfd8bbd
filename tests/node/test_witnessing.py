"""A node's witness feed (node/witnessing.py) against real witness servers on 127.0.0.1:
cosignatures are verified before they are kept, a lying or dead witness changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ledger.blocks import BlockHeader, build_block
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import verify_cosignatures
from ledger.errors import SignatureError
from ledger.genesis import genesis_hash
from ledger.keys import ALG_COSIGNATURE_V1, SigningKey
from ledger.ledger_store import Ledger
from ledger.merkle import Frontier
from ledger.storage import Storage
from ledger.witness import LogTrust
from node.config import WitnessEndpoint
from node.demo import DemoNetwork, make_network, make_record
from node.logging_setup import get_logger
from node.witness.alarms import Alarms
from node.witness.server import Witness, WitnessHTTPServer
from node.witness.store import WitnessStore
from node.witnessing import WitnessCounters, WitnessFeed, has_cosignature
from tests.integration.cluster import free_port_range

LOG = get_logger("test")
KEY = SigningKey("audit-office/w1", b"\x07" * 32, ALG_COSIGNATURE_V1)
OTHER = SigningKey("audit-office/w1", b"\x08" * 32, ALG_COSIGNATURE_V1)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    net = make_network(tmp_path / "net")
    with Storage(tmp_path / "store") as storage:
        ledger = Ledger(storage, genesis_hash(net.genesis_bytes))
        chain = Chain(net, ledger)
        for _ in range(4):
            chain.grow(10)
        yield chain


def _serve(server: ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def _witness(net: DemoNetwork, folder: Path, key: SigningKey) -> WitnessHTTPServer:
    registry = CollectorRegistry()
    trust = LogTrust(net.genesis.network, tuple(net.genesis.validator_keys), net.genesis.threshold)
    alarms = Alarms(folder / "alarms", key.verifier.to_vkey(), registry, LOG)
    witness = Witness(trust, key, WitnessStore(folder / "w.sqlite"), alarms, registry, LOG)
    return WitnessHTTPServer(("127.0.0.1", 0), witness, registry)


def _feed(ledger: Ledger, url: str) -> WitnessFeed:
    endpoint = WitnessEndpoint(url, KEY.verifier.to_vkey())
    return WitnessFeed(endpoint, ledger, threading.Lock(), WitnessCounters(CollectorRegistry()),
                       LOG)


def test_feed_gets_and_keeps_the_cosignature(chain: Chain, tmp_path: Path) -> None:
    net, ledger = chain.net, chain.ledger
    server = _witness(net, tmp_path, KEY)
    try:
        feed = _feed(ledger, _serve(server))
        assert feed.step()
        size, note = ledger.latest_checkpoint() or (0, b"")
        assert size == 40 and has_cosignature(note, KEY.verifier)
        assert len(verify_cosignatures(note, [KEY.verifier]).cosignatures) == 1
        assert chain.grow(20) == 60  # the tree grows: a consistency proof from 40
        fresh = _feed(ledger, feed.url)  # a restarted node: learns the size from a 409
        assert fresh.step() and fresh.witness_size == 60
        assert has_cosignature(ledger.checkpoint(60) or b"", KEY.verifier)
    finally:
        server.shutdown()
        server.server_close()


class Chain:
    """The demo network's ledger, grown block by block as the validators would."""

    def __init__(self, net: DemoNetwork, ledger: Ledger) -> None:
        self.net, self.ledger = net, ledger
        self.frontier = Frontier()
        self.parent: BlockHeader | None = None

    def grow(self, records: int) -> int:
        envs = [make_record(self.net, self.ledger.tree.size + i).raw for i in range(records)]
        block = build_block(self.net.genesis.network, self.parent, self.ledger.genesis_hash,
                            envs, self.frontier, 0, self.net.validator_keys[0].verifier.key_hash)
        cp = Checkpoint(self.net.genesis.network, block.header.tree_size, block.header.tree_root)
        self.ledger.commit_block(block, checkpoint_note=sign_checkpoint(
            cp, self.net.validator_keys[:3]))
        self.parent = block.header
        return block.header.tree_size


class Liar(BaseHTTPRequestHandler):
    """Answers 200 with a cosignature by another key under the witness's name."""

    answer: bytes = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_forged_cosignature_is_not_kept(chain: Chain) -> None:
    from ledger.cosignature import cosign
    from ledger.witness import cosignature_lines

    size, note = chain.ledger.latest_checkpoint() or (0, b"")
    checkpoint = Checkpoint(chain.net.genesis.network, size, chain.ledger.tree.root(size))
    Liar.answer = cosignature_lines((cosign(checkpoint, OTHER, 1),))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    try:
        with pytest.raises(SignatureError):
            _feed(chain.ledger, _serve(server)).step()
        assert chain.ledger.checkpoint(size) == note
    finally:
        server.shutdown()
        server.server_close()


def test_dead_witness_is_retried_later(chain: Chain) -> None:
    before = chain.ledger.latest_checkpoint()
    feed = _feed(chain.ledger, f"http://127.0.0.1:{free_port_range(1)}")
    assert feed.step() is False  # the pusher backs off and tries again
    assert chain.ledger.latest_checkpoint() == before

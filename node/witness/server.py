"""The witness process: ``ledger.witness.decide`` behind a small HTTP server on 127.0.0.1.

``Witness.add_checkpoint`` is the whole service: under the store's exclusive transaction
it reads the latest cosigned checkpoint, decides, persists an accepted checkpoint (before
the cosignature is returned) and raises the alarm for split-view evidence. The HTTP layer
only bounds and reads the body, reads the clock, and writes the decision out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from ledger.checkpoint import Checkpoint
from ledger.errors import FormatError, LedgerError
from ledger.genesis import Genesis
from ledger.keys import ALG_COSIGNATURE_V1, SigningKey
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.membership_chain import MembershipHistory, verify_chain
from ledger.note import Note
from ledger.witness import (
    BAD_REQUEST,
    CONFLICT,
    AddCheckpoint,
    Decision,
    LogTrust,
    decide,
    max_request_bytes,
)
from node.config import ConfigError, read_signing_key
from node.logging_setup import get_logger
from node.witness.alarms import Alarms
from node.witness.config import WitnessConfig
from node.witness.store import WitnessStore

ADD_CHECKPOINT = "/add-checkpoint"


class Witness:
    """One witness for one network: trust from its genesis, state in ``store``."""

    def __init__(self, trust: LogTrust, key: SigningKey, store: WitnessStore, alarms: Alarms,
                 registry: CollectorRegistry, log: Any, limits: Limits = DEFAULT_LIMITS,
                 trust_for_size: Callable[[int], LogTrust] | None = None) -> None:
        """``trust_for_size``: the validators signing each tree size once governance
        changed them (a membership chain); without it ``trust`` holds for every size."""
        if key.alg != ALG_COSIGNATURE_V1:
            raise ConfigError(f"witness key {key.name} must be a cosignature key (type 0x04);"
                              " create one with `shadowledger witness init`")
        self.trust, self.key, self.store, self.alarms = trust, key, store, alarms
        self.log, self.limits = log, limits
        self.trust_for_size = trust_for_size
        self.answers = Counter("shadowledger_witness_requests", "add-checkpoint answers",
                               ["status"], registry=registry)

    def add_checkpoint(self, body: bytes, now: int) -> Decision:
        origin = self.trust.origin
        with self.store.exclusive() as store:
            decision = decide(body, self._trust(body), store.latest(origin),
                              lambda size: store.seen_at(origin, size), self.key, now,
                              self.limits)
            if decision.accept is not None:
                store.record(decision.accept, now)  # durable when the transaction ends
        self.answers.labels(status=str(decision.status)).inc()
        if decision.evidence is not None:
            self.alarms.raise_alarm(origin, decision.evidence, decision.reason, now)
        elif decision.accept is not None:
            self.log.info("cosigned", size=decision.accept.checkpoint.size)
        elif decision.status == CONFLICT:  # routine: several nodes submit the same log
            self.log.info("stale old size", reason=decision.reason)
        else:
            self.log.warning("refused checkpoint", status=decision.status, reason=decision.reason)
        return decision


    def _trust(self, body: bytes) -> LogTrust:
        """The quorum for the request's checkpoint size (a malformed request gets the
        default trust: ``decide`` refuses it with the parse error)."""
        if self.trust_for_size is None:
            return self.trust
        try:
            note = AddCheckpoint.from_bytes(body, self.limits).note
            size = Checkpoint.from_text(Note.from_bytes(note, self.limits).text,
                                        self.limits).size
        except FormatError:
            return self.trust
        return self.trust_for_size(size)


class ChainTrust:
    """Validator quorums per tree size from a membership chain file, re-read (and verified
    from the genesis) whenever the file changes; a file that does not verify is ignored
    with a warning, keeping the last good one."""

    def __init__(self, genesis: Genesis, path: Path, log: Any) -> None:
        self.genesis, self.path, self.log = genesis, path, log
        self._stamp: tuple[int, int] | None = None
        self._history = MembershipHistory.genesis_only(genesis)
        self._lock = threading.Lock()

    def __call__(self, size: int) -> LogTrust:
        with self._lock:
            self._reload()
            m = self._history.for_size(size)
        return LogTrust(self.genesis.network, tuple(m.validator_keys), m.threshold)

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._history = verify_chain(self.path.read_bytes(), self.genesis)
        except (OSError, LedgerError) as exc:
            self.log.warning("membership chain refused", file=str(self.path), error=str(exc))
            return
        self.log.info("membership chain loaded", adoptions=len(self._history.sizes))


def open_witness(config: WitnessConfig, registry: CollectorRegistry) -> Witness:
    genesis = Genesis.from_bytes(config.witness.genesis.read_bytes())
    trust = LogTrust(genesis.network, tuple(genesis.validator_keys), genesis.threshold)
    key = read_signing_key(config.witness.key)
    config.witness.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = get_logger("witness").bind(witness=key.name)
    alarms = Alarms(config.alarms_dir, key.verifier.to_vkey(), registry, log)
    chain = config.witness.membership_chain
    per_size = None if chain is None else ChainTrust(genesis, chain, log)
    return Witness(trust, key, WitnessStore(config.database), alarms, registry, log,
                   trust_for_size=per_size)


class _Handler(BaseHTTPRequestHandler):
    server: WitnessHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, as tlog-witness recommends
    # Headers and body leave in two writes; with Nagle on, the body would wait for the
    # client's delayed ACK (~40 ms a request, measured by bench/bench_witness.py).
    disable_nagle_algorithm = True
    timeout = 30  # seconds a connection may sit idle or trickle a body (slow clients)

    def do_POST(self) -> None:
        if self.path.rstrip("/") != ADD_CHECKPOINT:
            self._reply(HTTPStatus.NOT_FOUND, b"unknown path; POST /add-checkpoint\n")
            return
        length = self.headers.get("Content-Length", "")
        limit = max_request_bytes(self.server.witness.limits)
        if not length.isdigit() or int(length) > limit:
            self._reply(BAD_REQUEST, f"Content-Length must be 0..{limit}\n".encode())
            self.close_connection = True
            return
        body = self.rfile.read(int(length))
        decision = self.server.witness.add_checkpoint(body, int(time.time()))
        self._reply(decision.status, decision.body, decision.content_type)

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self._reply(HTTPStatus.NOT_FOUND, b"unknown path\n")
            return
        self._reply(HTTPStatus.OK, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is logged by Witness, structured


class WitnessHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness,
                 registry: CollectorRegistry) -> None:
        super().__init__(address, _Handler)
        self.witness = witness
        self.registry = registry


def serve(config: WitnessConfig, stop: threading.Event) -> int:
    """Run the witness until ``stop`` is set; closes the store on the way out."""
    registry = CollectorRegistry()
    witness = open_witness(config, registry)
    host, _, port = config.witness.listen.rpartition(":")
    server = WitnessHTTPServer((host.strip("[]"), int(port)), witness, registry)
    thread = threading.Thread(target=server.serve_forever, name="witness-http", daemon=True)
    thread.start()
    witness.log.info("witness started", listen=f"{host}:{server.server_address[1]}",
                     origin=witness.trust.origin, vkey=witness.key.verifier.to_vkey())
    stop.wait()
    server.shutdown()
    server.server_close()
    witness.store.close()
    witness.log.info("witness stopped")
    return 0


def run_witness(config_path: Path) -> int:
    """``shadowledger witness run``: serve until SIGTERM or Ctrl-C."""
    from node.daemon import _stop_on_signals
    from node.logging_setup import configure_logging
    from node.witness.config import load_witness_config

    config = load_witness_config(config_path)
    configure_logging(config.log.format, config.log.level)
    return serve(config, _stop_on_signals())


def init_witness(folder: Path, name: str, genesis: Path, listen: str,
                 random_bytes: Any) -> tuple[Path, str]:
    """Write a cosignature key pair and witness.toml into ``folder``; returns (config, vkey)."""
    from node.localnet import write_secret
    from node.witness.config import config_text

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "witness.toml"
    skey = folder / "witness.skey"
    for path in (config, skey):
        if path.exists():
            raise ConfigError(f"{path} exists; choose another folder")
    key = SigningKey.generate(name, random_bytes, ALG_COSIGNATURE_V1)
    write_secret(skey, (key.to_skey() + "\n").encode())
    vkey = key.verifier.to_vkey()
    (folder / "witness.vkey").write_text(vkey + "\n")
    config.write_text(config_text("witness.skey", str(genesis.resolve()), listen))
    return config, vkey

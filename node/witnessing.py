"""Nodes push final checkpoints to witnesses and keep the cosignatures they get back.

One thread per configured witness (``[[witnesses]]`` in node.toml), never the consensus
thread: a slow or dead witness delays only its own cosignatures, never a commit. Each
thread wakes when a checkpoint becomes final (or every second), takes the latest final
checkpoint, and if that note lacks this witness's cosignature, runs tlog-witness
add-checkpoint: ``old`` is the witness's latest cosigned size (learned from its 409
answers; 0 at first, which the spec allows for asking), with an RFC 9162 consistency
proof from there. The returned cosignature lines are verified against the configured
vkey and appended to the stored note, so GetCheckpoint and receipts carry them.
Failures are retried with exponential backoff.
"""

from __future__ import annotations

import hmac
import http.client
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter

from ledger.checkpoint import Checkpoint
from ledger.errors import LedgerError
from ledger.keys import VerifierKey
from ledger.ledger_store import Ledger
from ledger.note import Note
from ledger.witness import (
    CONFLICT,
    OK,
    AddCheckpoint,
    parse_size_body,
    verify_response,
)
from node.config import WitnessEndpoint

POLL_S = 1.0
TIMEOUT_S = 5.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0


class WitnessConnection:
    """HTTP keep-alive connection to one witness's submission prefix."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S) -> None:
        parts = urlsplit(url)
        self._cls = (http.client.HTTPSConnection if parts.scheme == "https"
                     else http.client.HTTPConnection)
        self._host, self._port = parts.hostname or "", parts.port
        self._path = parts.path.rstrip("/") + "/add-checkpoint"
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, bytes]:
        """(status, body); OSError / HTTPException on a transport failure."""
        if self._conn is None:
            self._conn = self._cls(self._host, self._port, timeout=self._timeout)
        try:
            self._conn.request("POST", self._path, body,
                               {"Content-Type": "text/plain; charset=utf-8"})
            response = self._conn.getresponse()
            return response.status, response.read(1 << 20)
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def has_cosignature(note: bytes, witness: VerifierKey) -> bool:
    """Whether the stored note already carries a line from ``witness`` (checked on arrival)."""
    return any(sig.name == witness.name and hmac.compare_digest(sig.key_id, witness.key_id)
               for sig in Note.from_bytes(note).signatures)


class WitnessFeed:
    """Submits this node's latest final checkpoint to one witness."""

    def __init__(self, endpoint: WitnessEndpoint, ledger: Ledger, note_lock: threading.Lock,
                 counters: WitnessCounters, log: Any) -> None:
        self.key = VerifierKey.from_vkey(endpoint.vkey)
        self.url = endpoint.url
        self.ledger = ledger
        self.note_lock = note_lock
        self.counters = counters
        self.log = log.bind(witness=self.key.name, url=endpoint.url)
        self.conn = WitnessConnection(endpoint.url)
        self.witness_size = 0
        """The witness's latest cosigned size, as far as this node knows."""

    def step(self) -> bool:
        """One round: True if nothing is left to do, False to retry after a backoff."""
        latest = self.ledger.latest_checkpoint()
        if latest is None:
            return True
        size, note = latest
        if has_cosignature(note, self.key):
            return True
        if self.witness_size > size:
            return True  # the witness is ahead of this node: it cosigns through others
        checkpoint = Checkpoint.from_text(Note.from_bytes(note).text)
        for _ in range(3):  # a 409 teaches the witness's size: try again at once
            answer = self._submit(checkpoint, note)
            if answer is not None:
                return answer
        return False

    def _submit(self, checkpoint: Checkpoint, note: bytes) -> bool | None:
        old = min(self.witness_size, checkpoint.size)
        proof = (self.ledger.consistency_proof(old, checkpoint.size)
                 if 0 < old < checkpoint.size else [])
        request = AddCheckpoint(old, tuple(proof), note).to_bytes()
        try:
            status, body = self.conn.post(request)
        except (OSError, http.client.HTTPException) as exc:
            self.counters.failure(self.key.name, "unreachable")
            self.log.warning("witness unreachable", error=str(exc))
            return False
        if status == OK:
            self._keep(checkpoint, body)
            return True
        if status == CONFLICT:
            learned = parse_size_body(body)
            if learned == old:  # the witness holds another root for that size
                self.counters.failure(self.key.name, "conflict")
                self.log.error("witness refuses our checkpoint: it cosigned another root",
                               size=checkpoint.size)
                return False
            self.witness_size = learned
            return None if learned <= checkpoint.size else True
        self.counters.failure(self.key.name, str(status))
        self.log.warning("witness refused checkpoint", status=status, size=checkpoint.size,
                         reason=body[:200].decode("utf-8", "replace").strip())
        return False

    def _keep(self, checkpoint: Checkpoint, body: bytes) -> None:
        lines = verify_response(checkpoint, body, self.key)
        with self.note_lock:  # read-modify-write of the stored note, shared by all feeds
            stored = self.ledger.checkpoint(checkpoint.size)
            if stored is not None:
                merged = Note.from_bytes(stored).with_signatures(lines)
                self.ledger.add_checkpoint(checkpoint.size, merged.to_bytes())
        self.witness_size = checkpoint.size
        self.counters.cosigned.labels(witness=self.key.name).inc()
        self.log.debug("witness cosigned", size=checkpoint.size)


class WitnessCounters:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.cosigned = Counter("shadowledger_witness_cosignatures",
                                "Witness cosignatures received", ["witness"], registry=registry)
        self.failures = Counter("shadowledger_witness_failures",
                                "Failed witness submissions, by reason", ["witness", "reason"],
                                registry=registry)

    def failure(self, witness: str, reason: str) -> None:
        self.failures.labels(witness=witness, reason=reason).inc()


class WitnessPusher:
    """The feeds of every configured witness, each on a thread of its own."""

    def __init__(self, endpoints: Sequence[WitnessEndpoint], ledger: Ledger,
                 registry: CollectorRegistry, log: Any,
                 genesis_witnesses: Sequence[VerifierKey] = ()) -> None:
        counters = WitnessCounters(registry)
        lock = threading.Lock()
        self.feeds = [WitnessFeed(e, ledger, lock, counters, log) for e in endpoints]
        pinned = {key.key_hash for key in genesis_witnesses}
        for feed in self.feeds:
            if feed.key.key_hash not in pinned:  # allowed, but worth knowing
                feed.log.warning("witness is not in the genesis: verifiers using the genesis"
                                 " witnesses will not count its cosignatures")
        self._wake = [threading.Event() for _ in self.feeds]
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def notify(self) -> None:
        """A checkpoint became final (called from the thread that stored it; never blocks)."""
        for event in self._wake:
            event.set()

    def start(self) -> None:
        for feed, wake in zip(self.feeds, self._wake, strict=True):
            thread = threading.Thread(target=self._run, args=(feed, wake), daemon=True,
                                      name=f"witness-{feed.key.name}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopped.set()
        self.notify()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT_S + 1)
        for feed in self.feeds:
            feed.conn.close()

    def _run(self, feed: WitnessFeed, wake: threading.Event) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stopped.is_set():
            wake.clear()
            try:
                done = feed.step()
            except LedgerError as exc:  # a bad answer: logged, retried later
                feed.counters.failure(feed.key.name, "invalid")
                feed.log.warning("witness answer refused", error=str(exc))
                done = False
            if done:
                backoff = BACKOFF_MIN_S
                wake.wait(POLL_S)
            else:
                self._stopped.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)

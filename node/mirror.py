"""``shadowledger mirror``: anchor new and changed rows of an authoritative table.

Rows are hashed locally (``ledger.anchors``), compared with the local state, and the new
or changed ones go to the ledger as batch ``Anchor`` records of up to ``batch_rows`` rows
(the network orders records, not rows: a few hundred rows per record is what makes a
million-row table take minutes, not hours). Crash safety (docs/MIRROR.md): each signed
record is written to the state's ``pending`` table before it is submitted, and a row
counts as anchored only once its record's acknowledgement (final checkpoint) is in the
state. A re-run first settles the pending records by record id, so nothing is committed
twice and nothing is missed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from ledger.anchors import Row, RowHasher, RowKeys, anchor_body, anchored_rows
from ledger.keys import SigningKey
from ledger.limits import DEFAULT_LIMITS
from ledger.records import Envelope, decode_body, sign_record
from node.client import Ack, ApiError, LedgerClient, Refused
from node.mirror_state import MirrorState
from node.progress import progress_bar
from node.sources import Source, TableSpec
from proto import ledger_pb2

RECORD_BUDGET = DEFAULT_LIMITS.max_record_bytes - 2048
"""Bytes of rows per anchor record: under the record limit with room for the envelope."""
IN_FLIGHT_ROWS = 32_768
"""Rows submitted and not yet acknowledged: bounds the node's mempool use, and keeps
enough in flight to cover the commit latency (64 records of 512 rows; more, smaller
records when --batch-rows is small, up to ``MAX_IN_FLIGHT_RECORDS``)."""
MAX_IN_FLIGHT_RECORDS = 4096
SETTLE_TIMEOUT = 120.0
"""How long a re-run waits for a record of a killed run that is still in a mempool."""


class MirrorError(ApiError):
    """The network refused an anchor record (the code and message say why)."""


@dataclass(frozen=True)
class Writer:
    """Who signs the anchor records, for which network."""

    network: str
    agency: str
    key: SigningKey


@dataclass
class MirrorResult:
    rows_read: int = 0
    rows_new: int = 0
    rows_changed: int = 0
    records: int = 0
    recovered: int = 0
    seconds: float = 0.0
    first_index: int | None = None
    last_index: int | None = None

    @property
    def rows_anchored(self) -> int:
        return self.rows_new + self.rows_changed


def identity(writer: Writer, source: str, table: str) -> dict[str, str]:
    return {"network": writer.network, "agency": writer.agency, "source": source,
            "table": table}


def _row_size(row: Row) -> int:
    return 2 * 34 + len(row[1].encode()) + 8


def sign_anchor(writer: Writer, source: str, rows: Sequence[Row]) -> Envelope:
    body = ledger_pb2.RecordBody(
        network=writer.network, agency=writer.agency, nonce=os.urandom(16),
        created_ms=int(time.time() * 1000), anchor=anchor_body(source, rows))
    return sign_record(body, writer.key)


@dataclass
class _Outbox:
    """Rows waiting for a record, and records waiting for their acknowledgement."""

    batch_rows: int
    rows: list[Row] = field(default_factory=list)
    size: int = 0
    signed: list[tuple[Envelope, list[Row]]] = field(default_factory=list)
    sent: dict[bytes, list[Row]] = field(default_factory=dict)
    window: threading.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.window = threading.Semaphore(self.in_flight)

    @property
    def in_flight(self) -> int:
        return max(1, min(MAX_IN_FLIGHT_RECORDS, IN_FLIGHT_ROWS // self.batch_rows))

    def add(self, row: Row) -> bool:
        """Queue a row; whether a record is now full."""
        self.rows.append(row)
        self.size += _row_size(row)
        return len(self.rows) >= self.batch_rows or self.size >= RECORD_BUDGET - 512

    def take(self) -> list[Row]:
        rows, self.rows, self.size = self.rows, [], 0
        return rows

    @property
    def per_message(self) -> int:
        """Records per gRPC message, per pending-state transaction and per ack flush."""
        return max(1, min(256, self.in_flight // 4))


class Mirror:
    """One run of the mirror over one table."""

    def __init__(self, client: LedgerClient, writer: Writer, state: MirrorState,
                 keys: RowKeys, batch_rows: int = 512, quiet: bool = True) -> None:
        self.client = client
        self.writer = writer
        self.state = state
        self.keys = keys
        self.batch_rows = batch_rows
        self.quiet = quiet
        self.result = MirrorResult()

    def run(self, db: Source, spec: TableSpec) -> MirrorResult:
        started = time.monotonic()
        spec = db.resolve(spec)  # bad table or column names fail before anything is sent
        self.state.bind(identity(self.writer, self.keys.source, spec.table))
        self.result.recovered = self.recover()
        bar = progress_bar(db.count(spec.table), f"mirror {self.keys.source}", self.quiet)
        outbox = _Outbox(self.batch_rows)
        failure: list[BaseException] = []
        acks: list[tuple[bytes, int, list[Row]]] = []
        flushed = time.monotonic()
        try:
            envelopes = self._envelopes(db, spec, outbox, bar, failure)
            for answer in self.client.submit_many(envelopes, batch=outbox.per_message):
                outbox.window.release()
                rows = outbox.sent.pop(answer.record_id)
                if isinstance(answer, Refused):
                    self._settle(answer, rows)  # raises
                    continue
                acks.append((answer.record_id, answer.index, rows))
                self._count(answer)
                if len(acks) >= outbox.per_message or time.monotonic() - flushed > 0.5:
                    self.state.mark_anchored(acks)
                    acks, flushed = [], time.monotonic()
        finally:
            bar.close()
            self.state.mark_anchored(acks)  # what was acknowledged stays acknowledged
        if failure:
            raise failure[0]
        self.result.seconds = time.monotonic() - started
        return self.result

    def _envelopes(self, db: Source, spec: TableSpec, outbox: _Outbox, bar: Any,
                   failure: list[BaseException]) -> Iterator[bytes]:
        """Runs on the client's submit thread: read, hash, compare, sign, persist, send."""
        hasher = RowHasher(self.keys, spec.columns)
        try:
            for batch in db.rows(spec):
                digests = hasher.digest_many(batch)
                known = self.state.commitments([nym for _, nym, _, _ in digests])
                for _, nym, version, commit in digests:
                    old = known.get(nym)
                    if old == commit:
                        continue
                    if old is None:
                        self.result.rows_new += 1
                    else:
                        self.result.rows_changed += 1
                    if outbox.add((nym, version, commit)):
                        self._sign(outbox)
                        if len(outbox.signed) >= outbox.per_message:
                            yield from self._release(outbox)
                self.result.rows_read += len(batch)
                bar.update(len(batch))
                yield from self._release(outbox)
            if outbox.rows:
                self._sign(outbox)
            yield from self._release(outbox)
        except BaseException as exc:  # surfaced by run(): this thread has no caller
            failure.append(exc)

    def _sign(self, outbox: _Outbox) -> None:
        rows = outbox.take()
        outbox.signed.append((sign_anchor(self.writer, self.keys.source, rows), rows))

    def _release(self, outbox: _Outbox) -> Iterator[bytes]:
        """Persist the signed records as pending (one synced transaction), then send them."""
        if not outbox.signed:
            return
        signed, outbox.signed = outbox.signed, []
        self.state.add_pending([(env.record_id, env.raw) for env, _ in signed])
        for env, rows in signed:
            outbox.sent[env.record_id] = rows
            outbox.window.acquire()
            yield env.raw

    def _count(self, ack: Ack) -> None:
        self.result.records += 1
        if self.result.first_index is None:
            self.result.first_index = ack.index
        self.result.last_index = ack.index

    def _settle(self, answer: Ack | Refused, rows: list[Row]) -> None:
        if isinstance(answer, Refused):
            self.state.drop_pending(answer.record_id)
            raise MirrorError(answer.code, f"anchor record refused: {answer.message}")
        self.state.mark_anchored([(answer.record_id, answer.index, rows)])
        self._count(answer)

    # --- after a crash -------------------------------------------------------------------

    def recover(self) -> int:
        """Settle the records a killed run wrote as pending: committed ones are marked,
        the others submitted again as the same bytes. Returns how many were settled."""
        pending = [Envelope.from_bytes(raw) for raw in self.state.pending()]
        if not pending:
            return 0
        resend = [env for env in pending if not self._mark_if_committed(env)]
        rows = {env.record_id: anchored_rows(decode_body(env.body).anchor) for env in resend}
        answers = self.client.submit_many([env.raw for env in resend], batch=16) if resend \
            else iter(())
        for answer in answers:
            if isinstance(answer, Refused) and answer.code == grpc.StatusCode.ALREADY_EXISTS:
                self._await_commit(next(e for e in resend if e.record_id == answer.record_id))
                continue
            self._settle(answer, rows[answer.record_id])
        return len(pending)

    def _mark_if_committed(self, env: Envelope) -> bool:
        try:
            found = self.client.get_record(record_id=env.record_id)
        except ApiError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        self.state.mark_anchored(
            [(env.record_id, found.index, anchored_rows(found.record.body.anchor))])
        return True

    def _await_commit(self, env: Envelope) -> None:
        """The record is in a mempool (sent by the killed run): wait until it commits."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not self._mark_if_committed(env):
            if time.monotonic() > deadline:
                raise MirrorError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"record {env.record_id.hex()[:16]} of an earlier run is"
                                  " pending on the node but not committed; run again later")
            time.sleep(0.5)

"""gRPC servicers: thin. Authenticate, decode, call the core, map errors to status codes.

Status codes (STYLE.md rule 2):
- INVALID_ARGUMENT: malformed bytes, wrong network, a proof request outside the tree;
- UNAUTHENTICATED: no pinned certificate, or a record whose signature does not verify or
  whose signer is unknown;
- PERMISSION_DENIED: an agency submitting another agency's record, an auditor writing,
  an agency recording a sharing event or revocation it is not a party to, a client
  calling the peer service;
- ALREADY_EXISTS: the record is already committed or pending;
- RESOURCE_EXHAUSTED: an oversized record, a full mempool (back-pressure: retry later), or
  a store that refused a write (full LMDB map: the node halted until restarted);
- FAILED_PRECONDITION: a write to an observer, a receipt before any final checkpoint, a
  record the sharing policy refuses now (no active agreement covers a sharing event,
  a revocation of an unknown or revoked agreement; the message names what is missing);
- NOT_FOUND: no such record or checkpoint;
- UNAVAILABLE: not committed before the deadline (the record stays pending).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import NoReturn

import grpc

from ledger.errors import (
    FormatError,
    LedgerError,
    NotPermittedError,
    PolicyError,
    SignatureError,
    UsageError,
)
from ledger.policy import AgreementState, facts_of
from ledger.records import Envelope, Record
from node.client import status_code
from node.mempool import DuplicateRecord, MempoolFull
from node.node import Node
from node.tls import Identity, peer_identity
from proto import node_pb2, node_pb2_grpc


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


def authenticate(context: grpc.ServicerContext, node: Node) -> Identity:
    """The caller's pinned identity (membership in force), or UNAUTHENTICATED (shared by
    every servicer)."""
    identity = peer_identity(context, node.pins)
    if identity is None:
        _abort(context, grpc.StatusCode.UNAUTHENTICATED,
               "client certificate is not pinned in this network's membership")
    return identity



RECORD_ID_BYTES = 32
"""SHA-256 of a record body (``ledger.records.record_id``)."""
MAX_ACK_GROUP = 4096
"""Records answered in one SubmitStream response at most."""
STREAM_TIMEOUT_S = 60.0


class SubmitRefused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_Item = tuple[float, "Envelope | SubmitRefused", bytes]
"""(arrival time, admitted envelope or refusal, raw bytes) of one streamed record."""


class LedgerService(node_pb2_grpc.LedgerServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    # --- authentication ----------------------------------------------------------------

    def _identity(self, context: grpc.ServicerContext) -> Identity:
        return authenticate(context, self.node)

    # --- submissions -------------------------------------------------------------------

    def _accept(self, raw: bytes, who: Identity) -> Envelope:
        """Admit one record to the mempool or raise ``SubmitRefused``."""
        node = self.node
        if node.driver is None:
            raise SubmitRefused(grpc.StatusCode.FAILED_PRECONDITION,
                                "this is an observer node: it does not accept records;"
                                " submit to a validator")
        if node.write_failure is not None:
            node.metrics.rejected.labels("store_failed").inc()
            raise SubmitRefused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this node cannot write: {node.write_failure}")
        if who.role == "auditor":
            raise SubmitRefused(grpc.StatusCode.PERMISSION_DENIED,
                                f"{who.agency} is an auditor: it may read, not write")
        if len(raw) > node.limits.max_record_bytes:
            raise SubmitRefused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"record is {len(raw)} bytes; the limit is"
                                f" {node.limits.max_record_bytes}")
        try:
            record = node.mempool.check(raw)
        except SignatureError as exc:
            raise SubmitRefused(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from exc
        except FormatError as exc:
            raise SubmitRefused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        if record.body.agency != who.agency:
            raise SubmitRefused(grpc.StatusCode.PERMISSION_DENIED,
                                f"client of {who.agency} may not submit records of"
                                f" {record.body.agency}")
        self._check_policy(record)
        node.board.expect(record.record_id)
        try:
            node.mempool.add(raw, checked=record)
        except DuplicateRecord as exc:
            node.board.forget(record.record_id)
            raise SubmitRefused(grpc.StatusCode.ALREADY_EXISTS, str(exc)) from exc
        except MempoolFull as exc:
            node.board.forget(record.record_id)
            node.metrics.rejected.labels("mempool_full").inc()
            raise SubmitRefused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{exc}; retry with backoff") from exc
        except LedgerError as exc:
            node.board.forget(record.record_id)
            raise SubmitRefused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        node.gossip_record(raw)
        node.metrics.submitted.inc()
        return record.envelope

    def _check_policy(self, record: Record) -> None:
        """The sharing policy against committed + staged state at this node's clock (the
        block's validity check, at its own time, stays the authority)."""
        try:
            self.node.policy_view().check(facts_of(record), int(time.time() * 1000))
        except NotPermittedError as exc:
            raise SubmitRefused(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from exc
        except PolicyError as exc:
            raise SubmitRefused(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
        except SignatureError as exc:
            raise SubmitRefused(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from exc
        except FormatError as exc:
            raise SubmitRefused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc

    def Submit(self, request: node_pb2.SubmitRequest, context: grpc.ServicerContext
               ) -> node_pb2.SubmitResponse:
        who = self._identity(context)
        started = time.monotonic()
        remaining = context.time_remaining()
        timeout = min(remaining if remaining is not None else 60.0, STREAM_TIMEOUT_S)
        try:
            envelope = self._accept(request.envelope, who)
        except SubmitRefused as exc:
            _abort(context, exc.code, exc.message)
        answer, _ = self._await_group([(started, envelope, request.envelope)], timeout,
                                      request.trusted_size)
        placed = answer.placements[0]
        if placed.status:
            _abort(context, status_code(placed.status), placed.error)
        return node_pb2.SubmitResponse(record_id=placed.record_id, index=placed.index,
                                       height=placed.height, checkpoint=answer.checkpoint,
                                       consistency_from=answer.consistency_from,
                                       consistency_proof=answer.consistency_proof)

    def SubmitStream(self, request_iterator: Iterator[node_pb2.SubmitRequest],
                     context: grpc.ServicerContext) -> Iterator[node_pb2.SubmitResponse]:
        """Admit records as they arrive; answer in groups, each once its records are final."""
        who = self._identity(context)
        pending: queue.Queue[list[_Item] | None] = queue.Queue(maxsize=1024)
        proven = [0]  # the tree size the next answer's consistency proof starts from

        def read() -> None:
            try:
                for request in request_iterator:
                    if not proven[0]:  # until the first answer: the client's trusted size
                        proven[0] = request.trusted_size
                    raws = list(request.envelopes) or [request.envelope]
                    started = time.monotonic()
                    pending.put([(started, self._try_accept(raw, who), raw) for raw in raws])
            except grpc.RpcError:
                pass
            finally:
                pending.put(None)

        threading.Thread(target=read, name="submit-stream", daemon=True).start()
        waiting: deque[_Item] = deque()  # admitted or refused, not yet answered, in order
        open_ = True
        try:
            while (open_ or waiting) and context.is_active():
                if open_ and not waiting:
                    group = pending.get()
                    if group is None:
                        open_ = False
                        continue
                    waiting.extend(group)
                while open_:  # take in whatever else has arrived meanwhile
                    try:
                        group = pending.get_nowait()
                    except queue.Empty:
                        break
                    if group is None:
                        open_ = False
                    else:
                        waiting.extend(group)
                answer, size = self._await_group(self._ready_prefix(waiting),
                                                 STREAM_TIMEOUT_S, proven[0])
                proven[0] = size or proven[0]
                yield answer
        finally:  # a client that went away: nobody waits for its records any more
            for _, item, _ in waiting:
                if isinstance(item, Envelope):
                    self.node.board.forget(item.record_id)

    def _ready_prefix(self, waiting: deque[_Item]) -> list[_Item]:
        """The oldest records, up to the first one not committed yet (after waiting for the
        oldest): each answer goes out as soon as its own records are final, never held back
        by records submitted after them."""
        board = self.node.board
        started, item, _ = waiting[0]
        if isinstance(item, Envelope):
            board.wait(item.record_id, max(0.0, started + STREAM_TIMEOUT_S - time.monotonic()))
        prefix = [waiting.popleft()]
        while waiting and len(prefix) < MAX_ACK_GROUP:
            item = waiting[0][1]
            if isinstance(item, Envelope) and not board.settled(item.record_id):
                break
            prefix.append(waiting.popleft())
        return prefix

    def _try_accept(self, raw: bytes, who: Identity) -> Envelope | SubmitRefused:
        try:
            return self._accept(raw, who)
        except SubmitRefused as exc:
            return exc

    def _await_group(self, group: list[_Item], timeout: float, since: int = 0
                     ) -> tuple[node_pb2.SubmitResponse, int]:
        """Wait for every accepted record of ``group``, then for one final checkpoint;
        the answer and that checkpoint's tree size (0: none). The answer carries the
        consistency proof from tree size ``since`` (the client's trusted one, as far as
        this node knows) when it is below the checkpoint's."""
        node = self.node
        deadline = time.monotonic() + timeout
        placements: list[node_pb2.Placement] = []
        placed: list[tuple[float, node_pb2.Placement]] = []
        for started, item, raw in group:
            if isinstance(item, SubmitRefused):
                placements.append(node_pb2.Placement(record_id=_record_id_or_empty(raw),
                                                     status=item.code.value[0],
                                                     error=item.message))
                continue
            rid = item.record_id
            try:
                where = node.board.wait(rid, max(0.0, deadline - time.monotonic()))
                refusal = node.board.refusal(rid)
            finally:
                node.board.forget(rid)
            if refusal is not None:
                placements.append(node_pb2.Placement(
                    record_id=rid, status=grpc.StatusCode.FAILED_PRECONDITION.value[0],
                    error=f"left out of a block: {refusal}"))
                continue
            if where is None:
                placements.append(_unavailable(rid, f"not committed within {timeout:.0f} s; it"
                                               " stays pending: look it up by id later"))
                continue
            placement = node_pb2.Placement(record_id=rid, index=where[0], height=where[1])
            placements.append(placement)
            placed.append((started, placement))
        if not placed:
            return node_pb2.SubmitResponse(placements=placements), 0
        top = max(p.index for _, p in placed)
        final = node.checkpoints.wait_final(top + 1, max(0.0, deadline - time.monotonic()))
        if final is None:
            for _, p in placed:
                p.CopyFrom(_unavailable(p.record_id, f"committed at index {p.index} but no"
                                        " final checkpoint yet; fetch its receipt later"))
            return node_pb2.SubmitResponse(placements=placements), 0
        now = time.monotonic()
        for started, _ in placed:
            node.metrics.commit_latency.observe(now - started)
        size, note = final
        answer = node_pb2.SubmitResponse(placements=placements, checkpoint=note,
                                         height=max(p.height for _, p in placed))
        if 0 < since < size:
            answer.consistency_from = since
            answer.consistency_proof.extend(node.ledger.consistency_proof(since, size))
        return answer, size

    # --- reads -------------------------------------------------------------------------

    def _index(self, request: node_pb2.GetRecordRequest, context: grpc.ServicerContext) -> int:
        ledger = self.node.ledger
        if request.WhichOneof("key") == "record_id":
            if len(request.record_id) != RECORD_ID_BYTES:  # LMDB refuses empty/huge keys
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                       f"record_id must be {RECORD_ID_BYTES} bytes (SHA-256 of the body),"
                       f" got {len(request.record_id)}")
            index = ledger.index_of(request.record_id)
            if index is None:
                _abort(context, grpc.StatusCode.NOT_FOUND,
                       f"no committed record with id {request.record_id.hex()[:16]}")
            return index
        if request.index >= ledger.tree.size:
            _abort(context, grpc.StatusCode.NOT_FOUND,
                   f"no record at index {request.index}; the ledger holds {ledger.tree.size}")
        return request.index

    def GetRecord(self, request: node_pb2.GetRecordRequest, context: grpc.ServicerContext
                  ) -> node_pb2.RecordResponse:
        self._identity(context)
        index = self._index(request, context)
        return node_pb2.RecordResponse(index=index, envelope=self.node.ledger.record(index))

    def GetReceipt(self, request: node_pb2.GetRecordRequest, context: grpc.ServicerContext
                   ) -> node_pb2.ReceiptResponse:
        self._identity(context)
        index = self._index(request, context)
        ledger = self.node.ledger
        size = request.tree_size or None
        note = None
        if size is None:
            latest = self._latest_checkpoint()
            if latest is None or latest[0] <= index:
                _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                       f"record {index} is not yet covered by a final checkpoint; retry shortly")
            size, note = latest
        else:
            note = self.node.checkpoints.note(size)
        try:
            receipt = ledger.receipt(index, size, note)
        except UsageError as exc:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return node_pb2.ReceiptResponse(index=index, envelope=ledger.record(index),
                                        tlog_proof=receipt)

    def _latest_checkpoint(self) -> tuple[int, bytes] | None:
        """The latest final checkpoint: stored, or final a moment ago and not written yet
        (notes are written with the next block)."""
        stored = self.node.ledger.latest_checkpoint()
        final = self.node.checkpoints.latest
        if final is not None and (stored is None or final[0] > stored[0]):
            return final
        return stored

    def GetConsistencyProof(self, request: node_pb2.ConsistencyRequest,
                            context: grpc.ServicerContext) -> node_pb2.ConsistencyResponse:
        self._identity(context)
        size = self.node.ledger.tree.size
        if not 0 < request.size1 <= request.size2 <= size:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"need 0 < size1 <= size2 <= {size}, got {request.size1}, {request.size2}")
        hashes = self.node.ledger.consistency_proof(request.size1, request.size2)
        return node_pb2.ConsistencyResponse(hashes=hashes)

    def GetCheckpoint(self, request: node_pb2.CheckpointRequest, context: grpc.ServicerContext
                      ) -> node_pb2.CheckpointResponse:
        self._identity(context)
        if request.tree_size:
            note = self.node.checkpoints.note(request.tree_size)
            if note is None:
                _abort(context, grpc.StatusCode.NOT_FOUND,
                       f"no final checkpoint for tree size {request.tree_size}")
            return node_pb2.CheckpointResponse(note=note, tree_size=request.tree_size)
        latest = self._latest_checkpoint()
        if latest is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, "no final checkpoint yet")
        return node_pb2.CheckpointResponse(note=latest[1], tree_size=latest[0])

    def Watch(self, request: node_pb2.WatchRequest, context: grpc.ServicerContext
              ) -> Iterator[node_pb2.CommittedRecord]:
        self._identity(context)
        index = request.from_index
        while context.is_active():
            size = self.node.board.wait_size(index, 1.0)  # returns at once if already past
            for i in range(index, size):
                yield node_pb2.CommittedRecord(index=i, envelope=self.node.ledger.record(i))
            index = max(index, size)

    def GetStatus(self, request: node_pb2.StatusRequest, context: grpc.ServicerContext
                  ) -> node_pb2.StatusResponse:
        self._identity(context)
        node = self.node
        head = node.ledger.head
        return node_pb2.StatusResponse(
            node=node.name, role=node.role, height=head.height, tree_size=head.tree_size,
            root=node.ledger.tree.root(head.tree_size), mempool_records=len(node.mempool),
            connected_peers=node.peers.connected(),
        )

    def ListAgreements(self, request: node_pb2.ListAgreementsRequest,
                       context: grpc.ServicerContext) -> node_pb2.ListAgreementsResponse:
        self._identity(context)  # auditors too: they read everything
        book = self.node.policy
        height, agreements = book.height, book.agreements  # one consistent dict (copy on write)
        now = int(time.time() * 1000)
        infos = [_agreement_info(state, now) for _, state in sorted(agreements.items())
                 if not request.agency
                 or request.agency in (state.agreement.provider, state.agreement.recipient)]
        return node_pb2.ListAgreementsResponse(agreements=infos, height=height, time_ms=now)


    def GetGovernance(self, request: node_pb2.GovernanceRequest,
                      context: grpc.ServicerContext) -> node_pb2.GovernanceResponse:
        self._identity(context)  # auditors too
        book = self.node.policy.governance
        height, state = book.height, book.state  # immutable: one consistent snapshot
        current = state.current
        transitions = [node_pb2.TransitionInfo(
            number=t.number, from_height=t.from_height, tree_size=t.tree_size,
            membership=t.membership.to_bytes(), proposal_id=t.proposal_id,
            approval_ids=list(t.approval_ids), approvers=list(t.approvers), summary=t.summary,
        ) for t in state.transitions]
        pending = [node_pb2.ProposalInfo(
            proposal_id=p.proposal_id, author=p.author, membership=p.membership.to_bytes(),
            base=p.base, expires_ms=p.expires_ms, summary=p.summary,
            approvers=list(p.approvers), approvals_needed=current.approvals,
        ) for _, p in sorted(state.pending.items())]
        return node_pb2.GovernanceResponse(
            membership=current.to_bytes(), membership_hash=current.hash,
            transitions=transitions, pending=pending, height=height,
        )


    def GetMembershipChain(self, request: node_pb2.MembershipChainRequest,
                           context: grpc.ServicerContext) -> node_pb2.MembershipChainResponse:
        self._identity(context)
        from ledger.membership_chain import build_chain

        book = self.node.policy.governance
        height, state = book.height, book.state
        try:
            chain = build_chain(_WithUnwrittenNotes(self.node), self.node.network,
                                state.transitions)
        except LedgerError as exc:  # e.g. T_i's checkpoint not final yet: retry shortly
            _abort(context, grpc.StatusCode.UNAVAILABLE, f"membership chain: {exc}")
        return node_pb2.MembershipChainResponse(chain=chain, height=height)


class _WithUnwrittenNotes:
    """The node's ledger for ``build_chain``, with final checkpoint notes the consensus
    driver has not written yet (they ride along with its next block)."""

    def __init__(self, node: Node) -> None:
        self._ledger, self._checkpoints = node.ledger, node.checkpoints

    def index_of(self, rid: bytes) -> int | None:
        return self._ledger.index_of(rid)

    def record(self, index: int) -> bytes:
        return self._ledger.record(index)

    def receipt(self, index: int, size: int | None = None) -> bytes:
        note = self._checkpoints.note(size) if size is not None else None
        return self._ledger.receipt(index, size, note)


def _agreement_info(state: AgreementState, now_ms: int) -> node_pb2.AgreementInfo:
    a = state.agreement
    return node_pb2.AgreementInfo(
        agreement_id=a.agreement_id, provider=a.provider, recipient=a.recipient,
        datasets=sorted(a.datasets), purpose=a.purpose, legal_basis=a.legal_basis,
        valid_from_ms=a.valid_from_ms, valid_until_ms=a.valid_until_ms,
        revoked=state.revoked_at_ms is not None, revoked_at_ms=state.revoked_at_ms or 0,
        status=state.status(now_ms),
    )


def _unavailable(record_id: bytes, message: str) -> node_pb2.Placement:
    return node_pb2.Placement(record_id=record_id, status=grpc.StatusCode.UNAVAILABLE.value[0],
                              error=message)


def _record_id_or_empty(raw: bytes) -> bytes:
    try:
        return Envelope.from_bytes(raw).record_id
    except LedgerError:
        return b""


class PeerService(node_pb2_grpc.PeerServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    def _peer(self, context: grpc.ServicerContext) -> Identity:
        identity = peer_identity(context, self.node.pins)
        if identity is None or not identity.is_node:
            _abort(context, grpc.StatusCode.PERMISSION_DENIED,
                   "only the network's nodes may use the peer service")
        return identity

    def Gossip(self, request_iterator: Iterator[node_pb2.PeerMessage],
               context: grpc.ServicerContext) -> node_pb2.GossipAck:
        peer = self._peer(context)
        for message in request_iterator:
            self.node.on_peer_message(peer.agency, message)
        return node_pb2.GossipAck()

    def GetBlocks(self, request: node_pb2.BlocksRequest, context: grpc.ServicerContext
                  ) -> Iterator[node_pb2.CommittedBlock]:
        self._peer(context)
        ledger = self.node.ledger
        height = max(1, request.from_height)
        while context.is_active():
            head = ledger.head.height
            last = min(head, request.to_height) if request.to_height else head
            for h in range(height, last + 1):
                yield self.node.committed_block(h)
            height = max(height, last + 1)
            if not request.follow or (request.to_height and height > request.to_height):
                return
            self.node.wait_height(height, 1.0)

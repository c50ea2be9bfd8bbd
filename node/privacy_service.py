"""The ``Privacy`` gRPC service: off-ledger delivery, erasure, the subject index.

Thin like ``node/service.py``: authenticate, check, call the store, map errors.
Status codes:
- INVALID_ARGUMENT: an event id that is not 32 bytes, a sealed box whose size cannot
  hold the event's payload, a bad pseudonym;
- PERMISSION_DENIED: a delivery by an agency other than the event's provider (or an
  auditor); a fetch or erase by a client of another agency than this node's;
- NOT_FOUND: no committed record with that id (deliver only after the event is
  committed), nothing delivered, or the payload was erased;
- FAILED_PRECONDITION: the record is not a sharing event, or this node is not the
  event's recipient's (deliver to the recipient agency's node);
- ALREADY_EXISTS: a payload for the event is stored already, or was erased;
- RESOURCE_EXHAUSTED: a sealed payload over ``delivery.max_sealed_bytes``, a full store.
"""

from __future__ import annotations

import grpc

from ledger.delivery import EVENT_ID_BYTES, check_sealed_size
from ledger.errors import FormatError
from ledger.records import Envelope, decode_body
from ledger.subjects import MAX_PSEUDONYM_BYTES
from node.node import Node
from node.offledger import AlreadyDelivered, DeliveryStore, StoredDelivery, StoreFull
from node.service import _abort, authenticate
from node.tls import Identity
from proto import ledger_pb2, node_pb2, node_pb2_grpc

MAX_SUBJECT_EVENTS = 1000
"""Indices in one SubjectEvents answer at most (page with ``from_index``)."""


class PrivacyService(node_pb2_grpc.PrivacyServicer):
    def __init__(self, node: Node, store: DeliveryStore) -> None:
        self.node = node
        self.store = store

    def _identity(self, context: grpc.ServicerContext) -> Identity:
        return authenticate(context, self.node)

    def _event_id(self, event_id: bytes, context: grpc.ServicerContext) -> bytes:
        if len(event_id) != EVENT_ID_BYTES:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"event_id must be the {EVENT_ID_BYTES}-byte record id of a sharing "
                   f"event, got {len(event_id)} bytes")
        return event_id

    def _committed_event(self, event_id: bytes, context: grpc.ServicerContext
                         ) -> tuple[int, ledger_pb2.SharingEvent]:
        ledger = self.node.ledger
        index = ledger.index_of(event_id)
        if index is None:
            _abort(context, grpc.StatusCode.NOT_FOUND,
                   f"no committed record with id {event_id.hex()[:16]} at this node (tree "
                   f"size {ledger.tree.size}): deliver only after the sharing event is "
                   "committed; retry if it was committed just now")
        body = decode_body(Envelope.from_bytes(ledger.record(index)).body)
        if body.WhichOneof("kind") != "sharing_event":
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                   f"record {index} is a {body.WhichOneof('kind')}, not a sharing event")
        return index, body.sharing_event

    def Deliver(self, request: node_pb2.DeliverRequest, context: grpc.ServicerContext
                ) -> node_pb2.DeliverResponse:
        who = self._identity(context)
        event_id = self._event_id(request.event_id, context)
        limit = self.node.config.delivery.max_sealed_bytes
        if len(request.sealed) > limit:
            _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                   f"sealed payload is {len(request.sealed)} bytes; this node takes at most "
                   f"{limit}")
        index, event = self._committed_event(event_id, context)
        if who.role == "auditor" or who.is_node or who.agency != event.provider:
            _abort(context, grpc.StatusCode.PERMISSION_DENIED,
                   f"only the event's provider {event.provider} (its API clients) may "
                   f"deliver its payload, not {who.agency}")
        if event.recipient != self.node.name:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                   f"this is {self.node.name}'s node; deliver to the recipient "
                   f"{event.recipient}'s node (node.{event.recipient})")
        try:
            check_sealed_size(len(request.sealed), event.payload_size)
            self.store.put(event_id, index, who.agency, request.sealed)
        except FormatError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except AlreadyDelivered as exc:
            _abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except StoreFull as exc:
            _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        self.node.log.info("payload delivered", event_index=index, provider=who.agency,
                           sealed_bytes=len(request.sealed))
        return node_pb2.DeliverResponse(event_index=index, stored_bytes=len(request.sealed))

    def _own_agency(self, context: grpc.ServicerContext, what: str) -> None:
        who = self._identity(context)
        if who.agency != self.node.name or who.is_node:
            _abort(context, grpc.StatusCode.PERMISSION_DENIED,
                   f"only {self.node.name}'s API clients may {what} payloads delivered to "
                   f"{self.node.name}, not {who.agency}")

    def FetchDelivery(self, request: node_pb2.DeliveryRef, context: grpc.ServicerContext
                      ) -> node_pb2.DeliveryResponse:
        self._own_agency(context, "fetch")
        event_id = self._event_id(request.event_id, context)
        stored = self.store.get(event_id)
        if stored is False:
            _abort(context, grpc.StatusCode.NOT_FOUND,
                   f"the payload of event {event_id.hex()[:16]} was erased")
        if not isinstance(stored, StoredDelivery):
            _abort(context, grpc.StatusCode.NOT_FOUND,
                   f"no payload was delivered for event {event_id.hex()[:16]}")
        return node_pb2.DeliveryResponse(event_index=stored.event_index, sealed=stored.sealed,
                                         provider=stored.provider)

    def EraseDelivery(self, request: node_pb2.DeliveryRef, context: grpc.ServicerContext
                      ) -> node_pb2.EraseResponse:
        self._own_agency(context, "erase")
        event_id = self._event_id(request.event_id, context)
        erased = self.store.erase(event_id)
        if not erased:
            _abort(context, grpc.StatusCode.NOT_FOUND,
                   f"no stored payload for event {event_id.hex()[:16]} (never delivered, "
                   "or erased already)")
        self.node.log.info("payload erased", event_id=event_id.hex()[:16])
        return node_pb2.EraseResponse(erased_bytes=erased)

    def SubjectEvents(self, request: node_pb2.SubjectEventsRequest,
                      context: grpc.ServicerContext) -> node_pb2.SubjectEventsResponse:
        self._identity(context)
        if not 0 < len(request.subject_pseudonym) <= MAX_PSEUDONYM_BYTES:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"subject_pseudonym must be 1..{MAX_PSEUDONYM_BYTES} bytes (HMAC-SHA-256 "
                   f"is 32), got {len(request.subject_pseudonym)}")
        limit = min(request.limit or MAX_SUBJECT_EVENTS, MAX_SUBJECT_EVENTS)
        size = self.node.ledger.tree.size
        found, more = self.node.ledger.subjects.lookup(request.subject_pseudonym,
                                                       request.from_index, limit)
        return node_pb2.SubjectEventsResponse(indices=found, tree_size=size, more=more)

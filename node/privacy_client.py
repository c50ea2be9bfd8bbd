"""Typed client for privacy by design: share, deliver, fetch, erase, subject events.

``PrivacyClient`` wraps a verifying ``LedgerClient`` of one agency:
- ``share`` commits a sharing event (subject as a keyed pseudonym, payload as a salted
  commitment) and keeps the opening (salt + payload) in the agency's own files;
- ``deliver`` seals salt + payload to the recipient agency's box key (membership in force) and
  hands it to the recipient's node; ``fetch`` opens a delivery and checks it against the
  on-ledger commitment of the verified, receipted event; ``erase`` deletes it at the node
  and in the local files (crypto-shredding: the commitment becomes unlinkable);
- ``subject_events`` lists every sharing event about a subject, each verified with its
  receipt and the agreement it names; with ``verify_complete`` it also proves that the
  node's index omitted nothing (verified scan of the whole ledger against a final root).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from ledger import merkle
from ledger.agreements import Agreement
from ledger.delivery import DeliveryContent, check_against_event
from ledger.errors import UsageError, VerificationError
from ledger.keys import SigningKey
from ledger.privacy import commitment, pseudonym
from ledger.records import sign_record
from ledger.subjects import event_subject
from node.client import Ack, ApiError, LedgerClient, VerifiedRecord, _wrap
from node.delivery import open_sealed, recipient_box_key, seal
from proto import ledger_pb2, node_pb2, node_pb2_grpc

SALT_BYTES = 32
PAGE = 1000


@dataclass(frozen=True)
class Shared:
    """A committed sharing event and the opening of its commitment (kept off-ledger)."""

    ack: Ack
    salt: bytes
    payload: bytes


@dataclass(frozen=True)
class Opened:
    """A fetched delivery, opened and checked against the verified event."""

    event: VerifiedRecord
    provider: str
    salt: bytes
    payload: bytes


@dataclass(frozen=True)
class SubjectEvent:
    """One verified sharing event about a subject, with the agreement it names."""

    event: VerifiedRecord
    agreement: VerifiedRecord

    @property
    def terms(self) -> Agreement:
        return Agreement.from_record(self.agreement.record)


class Openings:
    """The agency's own files holding salts and payloads, one pair per event."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def paths(self, event_id: bytes) -> tuple[Path, Path]:
        stem = self.folder / event_id.hex()
        return stem.with_suffix(".salt"), stem.with_suffix(".payload")

    def save(self, event_id: bytes, salt: bytes, payload: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path, data in zip(self.paths(event_id), (salt, payload), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)

    def load(self, event_id: bytes) -> tuple[bytes, bytes]:
        salt, payload = self.paths(event_id)
        if not salt.exists() or not payload.exists():
            raise UsageError(f"no opening for event {event_id.hex()[:16]} in {self.folder} "
                             "(erased, or shared from elsewhere)")
        return salt.read_bytes(), payload.read_bytes()

    def erase(self, event_id: bytes) -> int:
        """Overwrite with zeros, sync, unlink; the count of files removed (best effort on
        copy-on-write or journalled file systems: docs/PRIVACY.md)."""
        removed = 0
        for path in self.paths(event_id):
            if not path.exists():
                continue
            size = path.stat().st_size
            with path.open("r+b") as f:
                f.write(b"\0" * size)
                f.flush()
                os.fsync(f.fileno())
            path.unlink()
            removed += 1
        return removed


class PrivacyClient:
    """One agency's privacy operations over a verifying ``LedgerClient``."""

    def __init__(self, client: LedgerClient, agency: str, *, record_key: SigningKey | None = None,
                 pseudonym_key: bytes | None = None, box_key: bytes | None = None,
                 openings: Path | None = None) -> None:
        self.client = client
        self.agency = agency
        self.record_key = record_key
        self.pseudonym_key = pseudonym_key
        self.box_key = box_key
        self.openings = Openings(openings) if openings is not None else None
        self._stub: Any = node_pb2_grpc.PrivacyStub(client.channel)  # type: ignore[no-untyped-call]

    @classmethod
    def from_profile(cls, path: str | Path, address: str | None = None,
                     server_name: str | None = None, openings: Path | None = None
                     ) -> PrivacyClient:
        """Keys from a ``client.toml``; openings default to ``openings/`` beside it."""
        from node.config import (
            load_client_profile,
            read_pseudonym_key,
            read_signing_key,
        )
        from node.delivery import read_box_key

        profile = load_client_profile(path)
        client = LedgerClient.from_profile(path, address, server_name)
        return cls(
            client, profile.agency,
            record_key=read_signing_key(profile.record_key) if profile.record_key else None,
            pseudonym_key=(read_pseudonym_key(profile.pseudonym_key)
                           if profile.pseudonym_key else None),
            box_key=read_box_key(profile.box_key) if profile.box_key else None,
            openings=openings or Path(path).parent / "openings",
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> PrivacyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.client._timeout)
        except grpc.RpcError as exc:
            raise _wrap(exc) from exc

    def _need(self, value: Any, what: str) -> Any:
        if value is None:
            raise UsageError(f"{self.agency}'s client profile has no {what}")
        return value

    # --- sharing -----------------------------------------------------------------------

    def subject_pseudonym(self, subject_id: str) -> bytes:
        return pseudonym(self._need(self.pseudonym_key, "pseudonym_key"), subject_id)

    def share(self, *, agreement_id: bytes, recipient: str, dataset: str, purpose: str,
              subject_id: str, payload: bytes) -> Shared:
        """Commit a sharing event authored by this agency as provider; keep its opening."""
        key: SigningKey = self._need(self.record_key, "record_key")
        salt = os.urandom(SALT_BYTES)
        body = ledger_pb2.RecordBody(
            network=self.client.genesis.network, agency=self.agency, nonce=os.urandom(16),
            created_ms=int(time.time() * 1000),
            sharing_event=ledger_pb2.SharingEvent(
                provider=self.agency, recipient=recipient, dataset=dataset, purpose=purpose,
                agreement_id=agreement_id, subject_pseudonym=self.subject_pseudonym(subject_id),
                payload_commitment=commitment(salt, payload), payload_size=len(payload)),
        )
        envelope = sign_record(body, key)
        if self.openings is not None:  # before submitting: a crash must not lose the salt
            self.openings.save(envelope.record_id, salt, payload)
        return Shared(self.client.submit(envelope), salt, payload)

    # --- delivery ----------------------------------------------------------------------

    def deliver(self, event_id: bytes, salt: bytes | None = None,
                payload: bytes | None = None) -> int:
        """Seal and send an event's payload to the node this client is connected to (the
        recipient's); salt and payload default to the saved opening. Returns its index."""
        if salt is None or payload is None:
            salt, payload = self._need(self.openings, "openings folder").load(event_id)
        event = self.client.get_record(record_id=event_id)
        content = DeliveryContent(event_id, salt, payload)
        check_against_event(content, event.record)  # never send what the ledger disowns
        recipient = event.record.body.sharing_event.recipient
        sealed = seal(content, recipient_box_key(self.client.membership(), recipient))
        request = node_pb2.DeliverRequest(event_id=event_id, sealed=sealed)
        return int(self._call(self._stub.Deliver, request).event_index)

    def fetch(self, event_id: bytes, save: bool = True) -> Opened:
        """Fetch, open and check a payload delivered to this agency."""
        secret: bytes = self._need(self.box_key, "box_key")
        response = self._call(self._stub.FetchDelivery, node_pb2.DeliveryRef(event_id=event_id))
        content = open_sealed(response.sealed, secret)
        event = self.client.get_record(record_id=event_id)
        check_against_event(content, event.record)
        if event.record.body.sharing_event.recipient != self.agency:
            raise VerificationError(f"event {event.index} is not addressed to {self.agency}")
        if save and self.openings is not None:
            self.openings.save(event_id, content.salt, content.payload)
        return Opened(event, response.provider, content.salt, content.payload)

    def erase(self, event_id: bytes, at_node: bool = True) -> tuple[int, int]:
        """Erase the payload at this agency's node (if ``at_node``) and the local opening:
        (bytes erased at the node, local files removed)."""
        erased = 0
        if at_node:
            request = node_pb2.DeliveryRef(event_id=event_id)
            erased = int(self._call(self._stub.EraseDelivery, request).erased_bytes)
        removed = self.openings.erase(event_id) if self.openings is not None else 0
        return erased, removed

    # --- data-subject report -------------------------------------------------------------

    def subject_indices(self, subject_pseudonym: bytes) -> Iterator[int]:
        """Every index the node's subject index names for a pseudonym (paged)."""
        start = 0
        while True:
            request = node_pb2.SubjectEventsRequest(subject_pseudonym=subject_pseudonym,
                                                    from_index=start, limit=PAGE)
            response = self._call(self._stub.SubjectEvents, request)
            yield from response.indices
            if not response.more or not response.indices:
                return
            start = response.indices[-1] + 1

    def subject_events(self, subject_id: str, verify_complete: bool = False
                       ) -> list[SubjectEvent]:
        """Every sharing event about ``subject_id``, verified, with its agreement."""
        wanted = self.subject_pseudonym(subject_id)
        indices = list(self.subject_indices(wanted))
        events = []
        agreements: dict[bytes, VerifiedRecord] = {}
        for index in indices:
            event = self.client.get_record(index=index)
            if event_subject(event.record.envelope.raw) != wanted:
                raise VerificationError(f"the node's index names record {index}, which is "
                                        "not a sharing event about this subject")
            agreement_id = event.record.body.sharing_event.agreement_id
            if agreement_id not in agreements:
                agreements[agreement_id] = self._agreement(index, agreement_id)
            events.append(SubjectEvent(event, agreements[agreement_id]))
        if verify_complete:
            self._check_complete(wanted, indices)
        return events

    def _agreement(self, index: int, agreement_id: bytes) -> VerifiedRecord:
        """The verified agreement an event names (every validator checked it exists)."""
        try:
            agreement = self.client.get_record(record_id=agreement_id)
        except ApiError as exc:
            raise VerificationError(f"event {index} names agreement "
                                    f"{agreement_id.hex()[:16]}, which the node does not "
                                    f"serve: {exc.message}") from exc
        if agreement.record.kind != "agreement":
            raise VerificationError(f"event {index} names record {agreement.index}, "
                                    "which is not an agreement")
        return agreement

    def _check_complete(self, wanted: bytes, indices: list[int]) -> None:
        """Read every record up to a final checkpoint, check they hash to its root, and
        that the index named every event about the subject."""
        checkpoint = self.client.checkpoint()
        if checkpoint.size == 0:
            return
        leaves: list[bytes] = []
        found: list[int] = []
        stream = self.client.channel.unary_stream(
            "/shadowledger.v1.Ledger/Watch",
            request_serializer=node_pb2.WatchRequest.SerializeToString,
            response_deserializer=node_pb2.CommittedRecord.FromString,
        )(node_pb2.WatchRequest(from_index=0))
        try:
            for item in stream:
                if item.index != len(leaves):
                    raise VerificationError(f"scan got record {item.index}, want {len(leaves)}")
                if event_subject(item.envelope) == wanted:
                    found.append(item.index)
                leaves.append(merkle.leaf_hash(item.envelope))
                if len(leaves) == checkpoint.size:
                    break
        finally:
            stream.cancel()
        if merkle.root(leaves) != checkpoint.root_hash:
            raise VerificationError("the scanned records do not hash to the final "
                                    f"checkpoint's root at size {checkpoint.size}")
        missing = sorted(set(found) - set(indices))
        if missing:
            raise VerificationError(f"the node's subject index omits events {missing}")

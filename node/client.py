"""Typed Python client for integrators, with verified reads.

The client trusts the genesis, not the server: it keeps the last checkpoint it verified
(signed by a quorum of the genesis validators) and, on every read, checks the record's
inclusion proof against a final checkpoint and that checkpoint's consistency with the one
it trusted before (like immudb's verified reads). A server that serves a forged proof or
a forked history raises ``VerificationError`` / ``ForkDetected``, never returns data.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import grpc

from ledger import merkle
from ledger.agreements import agreement_body, countersign, revocation_body, verify_agreement
from ledger.checkpoint import Checkpoint
from ledger.errors import (
    LedgerError,
    ProofError,
    SignatureError,
    UsageError,
    VerificationError,
)
from ledger.genesis import Genesis, TrustRoot, genesis_hash
from ledger.governance import approve_body, propose_body
from ledger.keys import SigningKey, VerifierKey
from ledger.membership import Membership
from ledger.membership_chain import MembershipHistory, verify_chain
from ledger.note import Note
from ledger.receipts import final_checkpoint
from ledger.records import Envelope, Record, sign_record, verify_envelope
from ledger.tlogproof import TlogProof
from ledger.witness_policy import WitnessPolicy, check_witnesses, require_witnesses
from proto import ledger_pb2, node_pb2, node_pb2_grpc

DEFAULT_PROPOSAL_MS = 24 * 3600 * 1000
"""A proposal stays open for approvals this long unless the proposer says otherwise."""


class MembershipHistoryLike(Protocol):
    """Verified memberships by tree size (``ledger.membership_chain.MembershipHistory``)."""

    @property
    def memberships(self) -> tuple[Membership, ...]: ...

    @property
    def sizes(self) -> tuple[int, ...]: ...

    def for_size(self, size: int) -> Membership: ...


class GenesisOnly:
    """No adoption known: the genesis membership signs every size."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.memberships = (membership,)
        self.sizes: tuple[int, ...] = ()

    def for_size(self, size: int) -> Membership:
        return self.membership


def chain_file(state_file: Path) -> Path:
    """Where a client keeps the membership chain it verified, beside its trusted checkpoint."""
    return state_file.with_name(state_file.name + ".membership-chain.json")


def saved_history(state_file: Path | None, genesis: Genesis) -> MembershipHistory | None:
    """The memberships of the chain a client saved, verified again from the genesis; None
    without one (a file that does not verify is ignored: the node's chain is fetched
    again when needed)."""
    if state_file is None or not chain_file(state_file).exists():
        return None
    try:
        return verify_chain(chain_file(state_file).read_bytes(), genesis)
    except (OSError, LedgerError):
        return None


def _carried(response: node_pb2.SubmitResponse) -> tuple[int, list[bytes]]:
    """The consistency proof a submit answer carried: (from tree size, hashes)."""
    return response.consistency_from, list(response.consistency_proof)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".client-state.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ApiError(LedgerError):
    """The node refused a call; ``code`` is the gRPC status, ``message`` its reason."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class ForkDetected(VerificationError):
    """Two final checkpoints that cannot both be true: evidence of a split view."""

    def __init__(self, message: str, trusted_note: bytes, new_note: bytes) -> None:
        super().__init__(message)
        self.trusted_note = trusted_note
        self.new_note = new_note


@dataclass(frozen=True)
class Ack:
    """A committed record: its position and the final checkpoint that covers it."""

    record_id: bytes
    index: int
    height: int
    checkpoint: Checkpoint


@dataclass(frozen=True)
class Refused:
    """A record the node refused inside a ``submit_many`` stream (the stream goes on)."""

    record_id: bytes
    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class VerifiedRecord:
    index: int
    record: Record
    receipt: bytes
    """The tlog-proof@v1 receipt an auditor can check offline with the genesis."""


def status_code(value: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of its numeric value (as carried in ``Placement.status``)."""
    return next((c for c in grpc.StatusCode if c.value[0] == value), grpc.StatusCode.UNKNOWN)


def _wrap(exc: grpc.RpcError) -> ApiError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return ApiError(code, details or "")


class LedgerClient:
    """One connection to one node; safe to use from one thread at a time."""

    def __init__(
        self,
        channel: grpc.Channel,
        genesis_bytes: bytes,
        state_file: Path | None = None,
        timeout: float = 30.0,
        witness_quorum: int = 0,
        witness_policy: WitnessPolicy | None = None,
    ) -> None:
        self._channel = channel
        self._stub: Any = node_pb2_grpc.LedgerStub(channel)  # type: ignore[no-untyped-call]
        self.genesis = Genesis.from_bytes(genesis_bytes)
        self._trust = TrustRoot(
            tuple(self.genesis.validator_keys),
            self.genesis.threshold,
            self.genesis.network,
            self.genesis.keyring(),
            genesis_hash(genesis_bytes),
        )
        self.history: MembershipHistoryLike = (
            saved_history(state_file, self.genesis)
            or GenesisOnly(Membership.from_genesis(self.genesis)))
        """The memberships the client verified, from the genesis on (``update_memberships``
        adds the adoptions proven by the node's membership chain, and keeps the chain
        beside ``state_file`` for the next start)."""
        self._timeout = timeout
        self._state_file = state_file
        self._trusted: tuple[Checkpoint, bytes] | None = None
        self._verified_notes: dict[bytes, Checkpoint] = {}
        if witness_policy is not None and witness_quorum:
            raise ValueError("give witness_quorum or witness_policy, not both")
        self.witness_policy = witness_policy or WitnessPolicy.k_of(self.genesis.witnesses,
                                                                    witness_quorum)
        """Checkpoints are trusted only with these witness cosignatures (tlog-policy). With
        ``witness_quorum`` K the witnesses are those of the membership signing each
        checkpoint's size (governance may change them); an explicit policy is kept."""
        self._witness_quorum = 0 if witness_policy is not None else witness_quorum
        if state_file is not None and state_file.exists():
            note = state_file.read_bytes()
            self._trusted = (self._final(note), note)

    @classmethod
    def connect(
        cls,
        address: str,
        genesis_bytes: bytes,
        tls_cert: bytes,
        tls_key: bytes,
        server_name: str,
        state_file: Path | None = None,
        max_message_bytes: int = 4 << 20,
        timeout: float = 30.0,
        witness_quorum: int = 0,
        witness_policy: WitnessPolicy | None = None,
    ) -> LedgerClient:
        """An mTLS channel to ``address`` that trusts exactly the genesis-pinned nodes.

        With ``witness_quorum`` K (of the genesis witnesses) or a ``witness_policy``, reads
        trust only checkpoints carrying those witness cosignatures.
        """
        from node.tls import channel_credentials, channel_options, genesis_node_pems

        genesis = Genesis.from_bytes(genesis_bytes)
        # Node certificates of the latest membership this client verified (governance may
        # have rotated them since the genesis).
        known = saved_history(state_file, genesis)
        latest = known.memberships[-1] if known is not None else genesis
        creds = channel_credentials(tls_cert, tls_key, genesis_node_pems(latest))
        channel = grpc.secure_channel(address, creds,
                                      channel_options(server_name, max_message_bytes))
        return cls(channel, genesis_bytes, state_file, timeout, witness_quorum, witness_policy)

    @classmethod
    def from_profile(cls, path: str | Path, address: str | None = None,
                     server_name: str | None = None, witness_quorum: int = 0,
                     witness_policy: WitnessPolicy | None = None) -> LedgerClient:
        """Connect with a ``client.toml`` profile (see docs/CONFIG.md).

        ``address``/``server_name`` override the profile's node, e.g. to read from another
        agency's node with the same credentials.
        """
        from node.config import load_client_profile

        profile = load_client_profile(path)
        state = Path(path).with_name(f"trusted-checkpoint.{profile.agency}")
        return cls.connect(
            address or profile.address, profile.genesis.read_bytes(),
            profile.tls_cert.read_bytes(), profile.tls_key.read_bytes(),
            server_name or profile.tls_server_name, state, profile.max_message_bytes,
            witness_quorum=0 if witness_policy else witness_quorum or profile.witness_quorum,
            witness_policy=witness_policy,
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def channel(self) -> grpc.Channel:
        """The connection, for the other services on the same port (``node.privacy_client``)."""
        return self._channel

    @property
    def trusted_checkpoint(self) -> Checkpoint | None:
        return None if self._trusted is None else self._trusted[0]

    def _trusted_size(self) -> int:
        """Told to the node on submits, so its answer proves consistency from there."""
        return 0 if self._trusted is None else self._trusted[0].size

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise _wrap(exc) from exc

    # --- checkpoints -------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The latest final checkpoint, verified and proven consistent with the last one."""
        response = self._call(self._stub.GetCheckpoint, node_pb2.CheckpointRequest())
        return self._advance(response.note)

    def _trust_for(self, size: int) -> TrustRoot:
        """The validators whose quorum makes a checkpoint of ``size`` final."""
        m = self.history.for_size(size)
        return replace(self._trust, validators=tuple(m.validator_keys), threshold=m.threshold,
                       keyring=m.keyring())

    def _final(self, note: bytes) -> Checkpoint:
        """Quorum-check a checkpoint note once; acks in one block all carry the same note.

        Checked with the validators of the membership that signs its size; a note beyond
        the memberships known here (signed by validators governance added) makes the client
        fetch and verify the node's membership chain once, then check again."""
        cached = self._verified_notes.get(note)
        if cached is None:
            size = Checkpoint.from_text(Note.from_bytes(note).text).size
            try:
                cached = final_checkpoint(note, self._trust_for(size))[0]
            except SignatureError:
                if not self._learn_memberships(size):
                    raise
                cached = final_checkpoint(note, self._trust_for(size))[0]
            if len(self._verified_notes) > 64:
                self._verified_notes.clear()
            self._verified_notes[note] = cached
        return cached

    def _advance(self, note: bytes, witnessed: bool = True,
                 proof: tuple[int, list[bytes]] | None = None) -> Checkpoint:
        """Trust ``note`` if final, witnessed as the policy asks, and consistent with what
        was trusted before.

        An acknowledgement's checkpoint (``witnessed=False``) is fresh: witnesses cosign it
        after it became final. It is checked (quorum, consistency) but, lacking the
        cosignatures the policy asks for, not stored as the trusted checkpoint.
        ``proof`` is a consistency proof the answer carried, (from size, hashes): used
        when it starts at the trusted size, else the node is asked for one. Either way it
        is verified here, so a node gains nothing by sending a wrong one.
        """
        checkpoint = self._final(note)
        policy = self._witness_policy_for(checkpoint.size)
        if policy.required:
            check = check_witnesses(note, policy)
            if not check.satisfied and witnessed:
                require_witnesses(note, policy)  # raises with the reason
            witnessed = check.satisfied
        else:
            witnessed = True
        if self._trusted is not None and self._trusted[1] == note:
            return checkpoint
        if self._trusted is not None:
            old, old_note = self._trusted
            # Whichever is older must be a prefix of the newer one.
            first, second = (old, checkpoint) if old.size <= checkpoint.size else (checkpoint, old)
            try:
                if first.size in (0, second.size):
                    hashes: list[bytes] = []
                elif proof is not None and proof[0] == first.size and second is checkpoint:
                    hashes = proof[1]
                else:
                    hashes = self.consistency_proof(first.size, second.size)
                if first.size:
                    merkle.verify_consistency(first.size, second.size, first.root_hash,
                                              second.root_hash, hashes)
            except ProofError as exc:
                raise ForkDetected(
                    f"final checkpoint at size {checkpoint.size} is not consistent with the"
                    f" trusted one at size {old.size}: {exc}", old_note, note
                ) from exc
        if witnessed and (self._trusted is None or checkpoint.size > self._trusted[0].size):
            self._trusted = (checkpoint, note)
            self._save(note)
        return checkpoint

    def _witness_policy_for(self, size: int) -> WitnessPolicy:
        if not self._witness_quorum:
            return self.witness_policy
        witnesses = self.history.for_size(size).witnesses
        if witnesses == self.genesis.witnesses:
            return self.witness_policy
        return WitnessPolicy.k_of(witnesses, self._witness_quorum)

    def _save(self, note: bytes) -> None:
        if self._state_file is not None:
            _write_atomically(self._state_file, note)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        request = node_pb2.ConsistencyRequest(size1=size1, size2=size2)
        return list(self._call(self._stub.GetConsistencyProof, request).hashes)

    # --- writes ------------------------------------------------------------------------

    def submit(self, envelope: Envelope | bytes) -> Ack:
        raw = envelope.raw if isinstance(envelope, Envelope) else envelope
        response = self._call(self._stub.Submit, node_pb2.SubmitRequest(
            envelope=raw, trusted_size=self._trusted_size()))
        return self._ack(raw, response)

    def submit_many(self, envelopes: Iterable[Envelope | bytes], batch: int = 256,
                    linger: float = 0.02) -> Iterator[Ack | Refused]:
        """Stream records; yield, per record and in order, a verified ``Ack`` once it is
        committed or a ``Refused`` saying why the node would not take it.

        Records go out up to ``batch`` per message; a message waits at most ``linger``
        seconds for more records (a few ms of latency saves one message per record when
        records trickle in, which is what limits throughput then).
        """
        raws: set[bytes] = set()  # record ids submitted and not yet answered

        source: queue.Queue[bytes | None] = queue.Queue(maxsize=4 * batch)

        def produce() -> None:  # the caller's iterator may block (rate limits, windows)
            try:
                for env in envelopes:
                    source.put(env.raw if isinstance(env, Envelope) else env)
            finally:
                source.put(None)

        def requests() -> Iterator[node_pb2.SubmitRequest]:
            # Never wait for a full batch: records in flight may be what the caller awaits.
            while True:
                first = source.get()
                if first is None:
                    return
                out = [first]
                until = time.monotonic() + linger
                while len(out) < batch:
                    try:
                        raw = source.get(timeout=max(0.0, until - time.monotonic()))
                    except queue.Empty:
                        break
                    if raw is None:
                        source.put(None)
                        break
                    out.append(raw)
                raws.update(Envelope.from_bytes(raw).record_id for raw in out)
                yield node_pb2.SubmitRequest(envelopes=out, trusted_size=self._trusted_size())

        threading.Thread(target=produce, name="submit-source", daemon=True).start()

        try:
            for response in self._stub.SubmitStream(requests()):
                checkpoint = None
                for p in response.placements:
                    if p.status:
                        raws.discard(p.record_id)
                        yield Refused(p.record_id, status_code(p.status), p.error)
                        continue
                    if p.record_id not in raws:
                        raise VerificationError("acknowledgement names a record not submitted")
                    raws.discard(p.record_id)
                    if checkpoint is None:
                        checkpoint = self._advance(response.checkpoint, witnessed=False,
                                                   proof=_carried(response))
                    yield self._placed(p.record_id, p.index, p.height, checkpoint)
        except grpc.RpcError as exc:
            raise _wrap(exc) from exc

    def _ack(self, raw: bytes, response: node_pb2.SubmitResponse) -> Ack:
        """Check an acknowledgement: final checkpoint covering the record at its index."""
        checkpoint = self._advance(response.checkpoint, witnessed=False,
                                   proof=_carried(response))
        if Envelope.from_bytes(raw).record_id != response.record_id:
            raise VerificationError("acknowledgement names another record")
        return self._placed(response.record_id, response.index, response.height, checkpoint)

    def _placed(self, record_id: bytes, index: int, height: int, checkpoint: Checkpoint
                ) -> Ack:
        if index >= checkpoint.size:
            raise VerificationError("acknowledged index is not covered by its checkpoint")
        return Ack(record_id, index, height, checkpoint)

    # --- verified reads ----------------------------------------------------------------

    def get_record(self, index: int | None = None, record_id: bytes | None = None
                   ) -> VerifiedRecord:
        """Fetch a record with its receipt and verify both before returning."""
        if (index is None) == (record_id is None):
            raise ValueError("give exactly one of index or record_id")
        request = (node_pb2.GetRecordRequest(index=index) if index is not None
                   else node_pb2.GetRecordRequest(record_id=record_id))
        response = self._call(self._stub.GetReceipt, request)
        return self.verify_receipt(response.envelope, response.tlog_proof, expect_index=index)

    def verify_receipt(self, envelope: bytes, receipt: bytes, expect_index: int | None = None
                       ) -> VerifiedRecord:
        proof = TlogProof.from_bytes(receipt)
        if expect_index is not None and proof.index != expect_index:
            raise VerificationError(f"asked for record {expect_index}, got {proof.index}")
        checkpoint = self._advance(proof.checkpoint_note)
        merkle.verify_inclusion(merkle.leaf_hash(envelope), proof.index, checkpoint.size,
                                list(proof.hashes), checkpoint.root_hash)
        # The record keys in force when it was committed (a rotation later does not
        # invalidate it).
        keyring = self.history.for_size(proof.index + 1).keyring()
        record = verify_envelope(Envelope.from_bytes(envelope), keyring, self.genesis.network)
        return VerifiedRecord(proof.index, record, receipt)

    def watch(self, from_index: int = 0) -> Iterator[node_pb2.CommittedRecord]:
        """Committed records as they come (unverified; use ``get_record`` to verify one)."""
        try:
            yield from self._stub.Watch(node_pb2.WatchRequest(from_index=from_index))
        except grpc.RpcError as exc:
            raise _wrap(exc) from exc

    def status(self) -> node_pb2.StatusResponse:
        response: node_pb2.StatusResponse = self._call(
            self._stub.GetStatus, node_pb2.StatusRequest()
        )
        return response

    # --- sharing agreements --------------------------------------------------------------
    # The flow between two agencies: one drafts (``draft_agreement``), the other checks
    # the terms and countersigns with its own key (``countersign_agreement``), the drafter
    # submits (``submit_agreement``). Events then name the agreement's id
    # (``sharing_event`` / ``share``); either party may ``revoke_agreement``.

    def record_key_of(self, agency: str) -> VerifierKey:
        """The record key the membership in force lists first for ``agency`` (the
        countersigner; the genesis one until governance rotates it)."""
        found = self._membership_now().agency(agency)
        if found is None or not found.record_keys:
            raise UsageError(f"agency {agency!r} has no record key in this network's "
                             "membership")
        return found.record_keys[0]

    def _membership_now(self) -> Membership:
        """The membership in force at the node (keys to draft and check agreements with;
        the ledger checks them again)."""
        return self.membership()

    def draft_agreement(self, key: SigningKey, *, provider: str, recipient: str,
                        datasets: Iterable[str], purpose: str, legal_basis: str,
                        valid_from_ms: int, valid_until_ms: int) -> ledger_pb2.RecordBody:
        """Terms authored by ``key``'s agency, to be countersigned by the other party."""
        other = recipient if key.name == provider else provider
        return agreement_body(
            network=self.genesis.network, author=key.name, provider=provider,
            recipient=recipient, datasets=datasets, purpose=purpose, legal_basis=legal_basis,
            valid_from_ms=valid_from_ms, valid_until_ms=valid_until_ms,
            countersigner=self.record_key_of(other), nonce=os.urandom(16),
            created_ms=int(time.time() * 1000),
        )

    @staticmethod
    def countersign_agreement(draft: ledger_pb2.RecordBody, key: SigningKey
                              ) -> ledger_pb2.RecordBody:
        """The other party's consent, with its own record key."""
        return countersign(draft, key)

    def submit_agreement(self, body: ledger_pb2.RecordBody, key: SigningKey) -> Ack:
        """Sign a countersigned agreement as its author, check it locally, submit it."""
        envelope = sign_record(body, key)
        keyring = self._membership_now().keyring()
        verify_agreement(verify_envelope(envelope, keyring, self.genesis.network), keyring)
        return self.submit(envelope)

    def revoke_agreement(self, key: SigningKey, agreement_id: bytes, reason: str = "") -> Ack:
        body = revocation_body(network=self.genesis.network, author=key.name,
                               agreement_id=agreement_id, reason=reason,
                               nonce=os.urandom(16), created_ms=int(time.time() * 1000))
        return self.submit(sign_record(body, key))

    def sharing_event(self, key: SigningKey, *, agreement_id: bytes, provider: str,
                      recipient: str, dataset: str, purpose: str,
                      subject_pseudonym: bytes = b"", payload_commitment: bytes = b"",
                      payload_size: int = 0) -> Envelope:
        """A signed data-sharing event under ``agreement_id`` (submit it, or batch many
        through ``submit_many``)."""
        body = ledger_pb2.RecordBody(
            network=self.genesis.network, agency=key.name, nonce=os.urandom(16),
            created_ms=int(time.time() * 1000),
            sharing_event=ledger_pb2.SharingEvent(
                provider=provider, recipient=recipient, dataset=dataset, purpose=purpose,
                agreement_id=agreement_id, subject_pseudonym=subject_pseudonym,
                payload_commitment=payload_commitment, payload_size=payload_size,
            ),
        )
        return sign_record(body, key)

    def share(self, key: SigningKey, **event: Any) -> Ack:
        """Submit one sharing event (keywords of ``sharing_event``); refused with
        FAILED_PRECONDITION unless an active agreement covers it."""
        return self.submit(self.sharing_event(key, **event))

    # --- governance ----------------------------------------------------------------------
    # An agency proposes a complete new membership (``propose_membership``, built from
    # the current one, e.g. with node.governance_cli's edits); other agencies approve it
    # (``approve_proposal``) until the current membership's ``approvals`` are reached;
    # the new membership is in force from the next block (docs/GOVERNANCE.md).

    def governance(self) -> node_pb2.GovernanceResponse:
        """Membership in force, adoptions so far and pending proposals (committed state;
        not proven: ``update_memberships`` verifies the adoptions)."""
        response: node_pb2.GovernanceResponse = self._call(
            self._stub.GetGovernance, node_pb2.GovernanceRequest())
        return response

    def membership(self) -> Membership:
        """The membership in force after the node's committed head."""
        return Membership.from_bytes(self.governance().membership)

    def proposals(self) -> list[node_pb2.ProposalInfo]:
        return list(self.governance().pending)

    def propose_membership(self, key: SigningKey, new: Membership, summary: str,
                           expires_ms: int | None = None, base: Membership | None = None
                           ) -> Ack:
        """Propose ``new`` in place of ``base`` (default: the node's current membership),
        signed by ``key``'s agency (its approval); open for a day unless ``expires_ms``."""
        new.check()
        now = int(time.time() * 1000)
        base_hash = (base or self.membership()).hash
        body = propose_body(self.genesis.network, key.name, os.urandom(16), now, new,
                            base_hash, expires_ms or now + DEFAULT_PROPOSAL_MS, summary)
        return self.submit(sign_record(body, key))

    def approve_proposal(self, key: SigningKey, proposal_id: bytes) -> Ack:
        body = approve_body(self.genesis.network, key.name, os.urandom(16),
                            int(time.time() * 1000), proposal_id)
        return self.submit(sign_record(body, key))

    def membership_chain(self) -> bytes:
        """The node's membership chain file (exact bytes; verify before trusting)."""
        response: node_pb2.MembershipChainResponse = self._call(
            self._stub.GetMembershipChain, node_pb2.MembershipChainRequest())
        return response.chain

    def update_memberships(self) -> bytes:
        """Fetch the membership chain and verify it from the genesis; from then on
        checkpoints and records are checked with the membership of their size, and (kept
        beside the state file) the next connection trusts the node certificates of the
        latest membership. Returns the chain's bytes."""
        chain = self.membership_chain()
        history = verify_chain(chain, self.genesis)
        known = self.history
        if (len(history.sizes) < len(known.sizes)
                or history.sizes[: len(known.sizes)] != known.sizes
                or any(a.hash != b.hash for a, b in zip(history.memberships, known.memberships,
                                                          strict=False))):
            # A valid but shorter (or different) chain would make the client forget
            # adoptions it verified: trust removed certificates and validators again.
            raise VerificationError(
                f"the node's membership chain ({len(history.sizes)} changes) does not extend "
                f"the one this client verified before ({len(known.sizes)} changes)")
        self.history = history
        if self._state_file is not None:
            _write_atomically(chain_file(self._state_file), chain)
        return chain

    def _learn_memberships(self, size: int) -> bool:
        """True if the chain proved a membership change below ``size`` not known before."""
        known = self.history.for_size(size).hash
        try:
            self.update_memberships()
        except (LedgerError, ApiError):
            return False
        return self.history.for_size(size).hash != known

    def agreements(self, agency: str = "") -> node_pb2.ListAgreementsResponse:
        """The committed agreements (of ``agency`` only, if given), with their status."""
        response: node_pb2.ListAgreementsResponse = self._call(
            self._stub.ListAgreements, node_pb2.ListAgreementsRequest(agency=agency))
        return response

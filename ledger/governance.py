"""Governance: membership changes proposed and approved by agencies on the ledger.

A ``Governance`` record either proposes a complete new membership document
(``ledger/membership.py``) replacing the current one (named by its hash, so a proposal
is a compare-and-swap), or approves a pending proposal. Once the distinct approving
voters of a proposal reach the current membership's ``approvals``, the record that made
them reach it adopts the proposal and the new membership is in force from the next block
on (docs/GOVERNANCE.md). Like the sharing policy, the state is derived only from
committed records and their blocks' header times, so checking governance records is part
of block validity and every validator computes the same memberships.

State (``GovernanceState``, immutable): the genesis membership M_0, the transitions
M_1..M_k (``Transition``: from which height and tree size, adopted by which records) and
the pending proposals with their approvers. A block's view (``GovernanceView``) starts
from the state after the blocks before it and is checked against the membership in force
at its height (M_k); ``finish`` turns its effect into ``GovernanceChanges``, written in the
block's transaction into the ``governance`` sub-database (``GovernanceBook``).

Rules (each refusal raises ``PolicyError`` / ``NotPermittedError`` naming the proposal):
- the author must be a voter (role "agency") of the membership in force;
- propose: the payload is a canonical membership different from the current one, ``base``
  is the current membership's hash, ``expires_ms`` is after the block time; the proposal
  counts as its author's approval;
- approve: names a pending proposal that has not expired (block time < expires_ms) and
  whose base is still the current membership; one approval per agency;
- at most one adoption per block; after it, the block's later governance records are
  refused (every other proposal is stale once the membership changed).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ledger.errors import (
    CorruptStoreError,
    FormatError,
    NotPermittedError,
    PolicyError,
    UsageError,
)
from ledger.membership import Membership
from ledger.records import Record
from proto import ledger_pb2

if TYPE_CHECKING:
    from ledger.ledger_store import Ledger

PROPOSE, APPROVE = "propose", "approve"
MAX_SUMMARY = 1024
HASH_SIZE = 32

_U64 = struct.Struct(">Q")
_HEIGHT_KEY = b"height"  # governance db: height of the last block applied (u64)
_TRANSITION = b"t/"  # + u64 number -> Transition JSON
_PENDING = b"p/"  # + proposal id -> Proposal JSON


def _when(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="milliseconds")


def short(record_id: bytes) -> str:
    return record_id.hex()[:16]


# --- record builders -------------------------------------------------------------------


def propose_body(network: str, agency: str, nonce: bytes, created_ms: int, new: Membership,
                 base: bytes, expires_ms: int, summary: str) -> ledger_pb2.RecordBody:
    """A proposal to replace the membership whose hash is ``base`` by ``new``."""
    return ledger_pb2.RecordBody(
        network=network, agency=agency, nonce=nonce, created_ms=created_ms,
        governance=ledger_pb2.Governance(action=PROPOSE, payload=new.to_bytes(), base=base,
                                         expires_ms=expires_ms, summary=summary))


def approve_body(network: str, agency: str, nonce: bytes, created_ms: int,
                 proposal_id: bytes) -> ledger_pb2.RecordBody:
    """An approval of the proposal whose record id is ``proposal_id``."""
    return ledger_pb2.RecordBody(
        network=network, agency=agency, nonce=nonce, created_ms=created_ms,
        governance=ledger_pb2.Governance(action=APPROVE, proposal_id=proposal_id))


# --- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GovernanceAction:
    """A governance record's decoded, well-formed content (no state needed)."""

    action: str
    author: str
    record_id: bytes
    membership: Membership | None = None
    """propose: the proposed membership."""
    base: bytes = b""
    expires_ms: int = 0
    summary: str = ""
    proposal_id: bytes = b""
    """approve: the proposal approved."""


def parse_action(record: Record) -> GovernanceAction:
    """The well-formedness checks of a governance record; ``FormatError`` says what is wrong."""
    if record.kind != "governance":
        raise FormatError(f"record is a {record.kind or 'kindless'} record, not governance")
    g = record.body.governance
    author, rid = record.body.agency, record.record_id
    if g.action == PROPOSE:
        if g.proposal_id:
            raise FormatError("a proposal must not name a proposal_id")
        if len(g.base) != HASH_SIZE:
            raise FormatError(f"proposal base is {len(g.base)} bytes, want {HASH_SIZE}")
        if len(g.summary) > MAX_SUMMARY:
            raise FormatError(f"proposal summary is over {MAX_SUMMARY} characters")
        try:
            membership = Membership.from_bytes(g.payload)
        except FormatError as exc:
            raise FormatError(f"proposal {short(rid)}: {exc}") from exc
        return GovernanceAction(PROPOSE, author, rid, membership, g.base, g.expires_ms,
                                g.summary)
    if g.action == APPROVE:
        if g.payload or g.base or g.expires_ms or g.summary:
            raise FormatError("an approval carries only a proposal_id")
        if len(g.proposal_id) != HASH_SIZE:
            raise FormatError(f"approval names a proposal id of {len(g.proposal_id)} bytes, "
                              f"want {HASH_SIZE}")
        return GovernanceAction(APPROVE, author, rid, proposal_id=g.proposal_id)
    raise FormatError(f"governance action is {g.action!r}, want {PROPOSE!r} or {APPROVE!r}")


# --- state -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)


@dataclass(frozen=True)
class Proposal:
    """A pending proposal: what it proposes and who approved it so far."""

    proposal_id: bytes
    author: str
    membership: Membership
    base: bytes
    expires_ms: int
    summary: str
    approvers: tuple[str, ...]
    """Distinct approving voters in ledger order; the first is the author."""
    approval_ids: tuple[bytes, ...] = ()
    """Record ids of the approvals (the proposal itself not included)."""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.proposal_id.hex(), "author": self.author,
                "membership": _b64(self.membership.to_bytes()), "base": self.base.hex(),
                "expires_ms": self.expires_ms, "summary": self.summary,
                "approvers": list(self.approvers),
                "approval_ids": [a.hex() for a in self.approval_ids]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Proposal:
        return cls(bytes.fromhex(doc["id"]), str(doc["author"]),
                   Membership.from_bytes(_unb64(doc["membership"])),
                   bytes.fromhex(doc["base"]), int(doc["expires_ms"]), str(doc["summary"]),
                   tuple(str(a) for a in doc["approvers"]),
                   tuple(bytes.fromhex(a) for a in doc["approval_ids"]))


@dataclass(frozen=True)
class Transition:
    """Adoption number ``number`` (>= 1): M_number replaced M_{number-1}."""

    number: int
    from_height: int
    """First block decided by the new membership (the adopting block's height + 1)."""
    tree_size: int
    """T_i: the tree size after the adopting block (its checkpoint is still signed by the
    old membership's validators; larger sizes by the new one's)."""
    membership: Membership
    proposal_id: bytes
    approval_ids: tuple[bytes, ...]
    """Record ids of the approvals that counted (the last one adopted it; empty when the
    proposal alone reached the threshold)."""
    approvers: tuple[str, ...]
    summary: str = ""

    @property
    def record_ids(self) -> tuple[bytes, ...]:
        """The proposal and its approvals: the records an auditor needs to replay it."""
        return (self.proposal_id, *self.approval_ids)

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "from_height": self.from_height,
                "tree_size": self.tree_size, "membership": _b64(self.membership.to_bytes()),
                "proposal_id": self.proposal_id.hex(),
                "approval_ids": [a.hex() for a in self.approval_ids],
                "approvers": list(self.approvers), "summary": self.summary}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Transition:
        return cls(int(doc["number"]), int(doc["from_height"]), int(doc["tree_size"]),
                   Membership.from_bytes(_unb64(doc["membership"])),
                   bytes.fromhex(doc["proposal_id"]),
                   tuple(bytes.fromhex(a) for a in doc["approval_ids"]),
                   tuple(str(a) for a in doc["approvers"]), str(doc.get("summary", "")))


@dataclass(frozen=True)
class GovernanceState:
    """Memberships M_0..M_k and the pending proposals, after some prefix of the chain."""

    genesis: Membership
    transitions: tuple[Transition, ...] = ()
    pending: Mapping[bytes, Proposal] = field(default_factory=dict)

    @property
    def current(self) -> Membership:
        """The membership that decides the next block (M_k)."""
        return self.transitions[-1].membership if self.transitions else self.genesis

    def membership(self, number: int) -> Membership:
        """M_number."""
        if not 0 <= number <= len(self.transitions):
            raise UsageError(f"no membership {number} (there are {len(self.transitions) + 1})")
        return self.transitions[number - 1].membership if number else self.genesis

    def at_height(self, height: int) -> Membership:
        """The membership in force at block ``height`` (decides it, signs its records)."""
        k = sum(1 for t in self.transitions if t.from_height <= height)
        return self.membership(k)

    def for_size(self, size: int) -> Membership:
        """The membership whose validators sign checkpoints of tree ``size``: M_k with k
        the number of adoptions whose T_i < size."""
        k = sum(1 for t in self.transitions if t.tree_size < size)
        return self.membership(k)

    def at_index(self, index: int) -> Membership:
        """The membership in force when the record at leaf ``index`` was committed."""
        return self.for_size(index + 1)


def _approve(proposal: Proposal, approver: str, record_id: bytes) -> Proposal:
    return replace(proposal, approvers=(*proposal.approvers, approver),
                   approval_ids=(*proposal.approval_ids, record_id))


class GovernanceView:
    """The governance state seen by one block: ``base`` plus this block's records."""

    def __init__(self, base: GovernanceState) -> None:
        self.base = base
        self.current = base.current
        """The membership deciding this block: every record is checked against it."""
        self.pending: dict[bytes, Proposal] = dict(base.pending)
        self.adopted: Proposal | None = None
        self.changed = False

    def apply(self, record: Record, time_ms: int) -> Proposal | None:
        """Check a governance record at ``time_ms`` and keep its effect; returns the
        proposal it adopted (None if none). ``PolicyError`` if refused."""
        updated, adopts = self.check(record, time_ms)
        self.changed = True
        if adopts:
            self.adopted = updated
            self.pending.clear()  # every other proposal is stale now
        else:
            self.pending[updated.proposal_id] = updated
        return updated if adopts else None

    def check(self, record: Record, time_ms: int) -> tuple[Proposal, bool]:
        """(the proposal after this record, whether it is adopted by it); changes nothing."""
        action = parse_action(record)
        author, current = action.author, self.current
        what = (f"proposal {short(action.record_id)}" if action.action == PROPOSE
                else f"approval of proposal {short(action.proposal_id)}")
        if author not in current.voters:
            role = current.roles.get(author)
            why = "it is an auditor" if role == "auditor" else "it is not a member agency"
            raise NotPermittedError(f"{author} may not author a governance {what}: {why} of "
                                    "the membership in force (only agencies vote)")
        if self.adopted is not None:
            raise PolicyError(f"{what} refused: proposal {short(self.adopted.proposal_id)} "
                              "was adopted earlier in this block; the membership changes "
                              "with the next block, submit again against it")
        if action.action == PROPOSE:
            assert action.membership is not None
            if action.base != current.hash:
                raise PolicyError(f"{what} is stale: its base {action.base.hex()[:16]} is not "
                                  f"the membership in force ({current.hash.hex()[:16]})")
            if time_ms >= action.expires_ms:
                raise PolicyError(f"{what} expired at {_when(action.expires_ms)} "
                                  f"(block time {_when(time_ms)})")
            if action.membership.hash == current.hash:
                raise PolicyError(f"{what} proposes the membership already in force")
            created = Proposal(action.record_id, author, action.membership, action.base,
                               action.expires_ms, action.summary, (author,))
            return created, current.approvals <= 1
        proposal = self.pending.get(action.proposal_id)
        if proposal is None:
            adopted = next((t for t in self.base.transitions
                            if t.proposal_id == action.proposal_id), None)
            if adopted is not None:
                raise PolicyError(f"{what} refused: it was already adopted (membership "
                                  f"{adopted.number}, in force from block "
                                  f"{adopted.from_height})")
            raise PolicyError(f"{what} refused: no such proposal is pending (unknown, "
                              "expired, or stale since the membership changed)")
        if proposal.base != current.hash:
            raise PolicyError(f"{what} refused: the proposal is stale (its base is not the "
                              "membership in force)")
        if time_ms >= proposal.expires_ms:
            raise PolicyError(f"{what} refused: the proposal expired at "
                              f"{_when(proposal.expires_ms)} (block time {_when(time_ms)})")
        if author in proposal.approvers:
            raise PolicyError(f"{what} refused: {author} already approved it")
        updated = _approve(proposal, author, action.record_id)
        return updated, len(updated.approvers) >= current.approvals

    def expire(self, time_ms: int) -> list[bytes]:
        """Drop the pending proposals that expired by block time ``time_ms`` (time_ms >=
        expires_ms: none of them can be approved any more); returns their ids."""
        gone = sorted(pid for pid, p in self.pending.items() if time_ms >= p.expires_ms)
        for pid in gone:
            del self.pending[pid]
        if gone:
            self.changed = True
        return gone

    def finish(self, height: int, tree_size: int, time_ms: int | None = None
               ) -> GovernanceChanges:
        """This block's effect, once it is block ``height`` ending at ``tree_size``.

        With the block's header time ``time_ms``, the proposals expired by then are pruned
        from the pending state at this block (every node prunes at the same block, so
        the state stays deterministic and does not grow with abandoned proposals)."""
        if time_ms is not None:
            self.expire(time_ms)
        if not self.changed:
            return GovernanceChanges(height, None)
        transitions = self.base.transitions
        new: tuple[Transition, ...] = ()
        if self.adopted is not None:
            p = self.adopted
            new = (Transition(len(transitions) + 1, height + 1, tree_size, p.membership,
                              p.proposal_id, p.approval_ids, p.approvers, p.summary),)
        state = GovernanceState(self.base.genesis, transitions + new, dict(self.pending))
        return GovernanceChanges(height, state, new)


@dataclass(frozen=True)
class GovernanceChanges:
    """What one block changed: the whole new state (None: nothing) and the transition it
    adopted, if any. Written in the block's transaction (``Ledger.commit_block``)."""

    height: int
    state: GovernanceState | None
    new_transitions: tuple[Transition, ...] = ()

    def write(self, txn: Any, db: Any) -> None:
        if self.state is not None:
            _clear_prefix(txn, db, _PENDING)
            for pid, proposal in self.state.pending.items():
                txn.put(_PENDING + pid, _dump(proposal.to_json()), db=db)
            for t in self.new_transitions:
                txn.put(_TRANSITION + _U64.pack(t.number), _dump(t.to_json()), db=db)
        txn.put(_HEIGHT_KEY, _U64.pack(self.height), db=db)


def _dump(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _clear_prefix(txn: Any, db: Any, prefix: bytes) -> None:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    while bytes(cursor.key()).startswith(prefix):
        if not cursor.delete():
            break


def latest_state(committed: GovernanceState,
                 staged: Sequence[GovernanceChanges | None] = ()) -> GovernanceState:
    """The state after the committed chain and then ``staged`` blocks (oldest first)."""
    for changes in reversed(staged):
        if changes is not None and changes.state is not None:
            return changes.state
    return committed


class GovernanceBook:
    """A node's committed governance state, loaded from the ``governance`` sub-database
    and kept in step with the chain (``absorb`` after each ``Ledger.commit_block``).

    ``PolicyBook`` owns one and rebuilds both together when a store is behind."""

    def __init__(self, ledger: Ledger, genesis: Membership) -> None:
        self.ledger = ledger
        self.state = GovernanceState(genesis)
        self.height = 0
        if ledger.storage.has_db(b"governance"):  # else: an older store, read-only
            self._db = ledger.storage.db(b"governance")
            self._load()

    def _load(self) -> None:
        transitions: list[Transition] = []
        pending: dict[bytes, Proposal] = {}
        with self.ledger.storage.read() as txn:
            for key, value in txn.cursor(db=self._db):
                key = bytes(key)
                try:
                    if key == _HEIGHT_KEY:
                        self.height = _U64.unpack(value)[0]
                    elif key.startswith(_TRANSITION):
                        transitions.append(Transition.from_json(json.loads(bytes(value))))
                    elif key.startswith(_PENDING):
                        proposal = Proposal.from_json(json.loads(bytes(value)))
                        pending[proposal.proposal_id] = proposal
                    else:
                        raise ValueError(f"unknown key {key[:20]!r}")
                except (ValueError, KeyError, TypeError, FormatError, struct.error) as exc:
                    raise CorruptStoreError(f"governance entry {key[:40]!r}: {exc}") from exc
        for n, t in enumerate(transitions, 1):
            if t.number != n:
                raise CorruptStoreError(f"governance transition {n} is missing")
        self.state = GovernanceState(self.state.genesis, tuple(transitions), pending)

    def reset(self, state: GovernanceState, height: int) -> None:
        """Take a rebuilt state (``PolicyBook`` writes it)."""
        self.state, self.height = state, height

    # -- queries -----------------------------------------------------------------------

    def membership(self) -> Membership:
        """The membership after the latest committed block (decides the next one)."""
        return self.state.current

    def membership_at(self, height: int) -> Membership:
        return self.state.at_height(height)

    def membership_for_size(self, size: int) -> Membership:
        return self.state.for_size(size)

    def history(self) -> tuple[Transition, ...]:
        return self.state.transitions

    def pending(self) -> list[Proposal]:
        return sorted(self.state.pending.values(), key=lambda p: p.proposal_id)

    # -- blocks ------------------------------------------------------------------------

    def view(self, staged: Sequence[GovernanceChanges | None] = ()) -> GovernanceView:
        return GovernanceView(latest_state(self.state, staged))

    def absorb(self, changes: GovernanceChanges) -> None:
        if changes.height != self.height + 1:
            raise UsageError(f"governance changes for block {changes.height} do not follow "
                             f"block {self.height}")
        if changes.state is not None:
            self.state = changes.state
        self.height = changes.height


def stored_transitions(ledger: Ledger) -> tuple[Transition, ...]:
    """The transitions stored in ``ledger``'s ``governance`` sub-database (none in a store
    written before it existed), without the genesis: what a reader (export, receipts,
    explorer) needs to build the membership chain."""
    if not ledger.storage.has_db(b"governance"):
        return ()
    db = ledger.storage.db(b"governance")
    found: list[Transition] = []
    with ledger.storage.read() as txn:
        cursor = txn.cursor(db=db)
        if cursor.set_range(_TRANSITION):
            for key, value in cursor:
                if not bytes(key).startswith(_TRANSITION):
                    break
                try:
                    found.append(Transition.from_json(json.loads(bytes(value))))
                except (ValueError, KeyError, TypeError, FormatError) as exc:
                    raise CorruptStoreError(f"governance entry {bytes(key)[:40]!r}: "
                                            f"{exc}") from exc
    for n, t in enumerate(found, 1):
        if t.number != n:
            raise CorruptStoreError(f"governance transition {n} is missing")
    return tuple(found)


def write_state(txn: Any, db: Any, state: GovernanceState, height: int) -> None:
    """Replace the whole ``governance`` sub-database by ``state`` (rebuilds)."""
    txn.drop(db, delete=False)
    GovernanceChanges(height, state, state.transitions).write(txn, db)

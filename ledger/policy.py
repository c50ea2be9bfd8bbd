"""The sharing policy: which records may be committed, given the agreements on the ledger.

The policy state is derived only from committed records and their blocks' header times
(never from a clock), so every validator computes the same state and the same verdict for
a proposed block: checking the policy is part of block validity (docs/POLICY.md).

State: agreement id -> (terms, revoked-at). Records are applied in ledger order, each at
its block's time; a record either passes and changes the state (an agreement, a
revocation) or is refused with a message naming what is missing:

- an agreement must pass ``verify_agreement`` (both parties signed its terms);
- a revocation must be authored by a party to a known agreement not yet revoked;
- a sharing event must be authored by its provider or recipient and name an agreement
  that exists, is not revoked, and covers its provider, recipient, dataset and purpose
  at the block's time (expiry needs no record: ``valid_until``);
- an agency whose role is "auditor" may author nothing;
- a governance record must pass the governance rules (``ledger/governance.py``).

Everything a record is checked against (roles, record keys) comes from the membership in
force at its block's height: the genesis membership, then each membership governance
adopted (``GovernanceBook``), whose state is kept and layered alongside the agreements.

Layers: the state a block is checked against is the committed state plus, above it, the
changes of blocks decided but not yet written (``PolicyView``: layered dicts), so a
block built on a staged block sees exactly what the durable state will be.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ledger.agreements import Agreement, verify_agreement
from ledger.errors import (
    CorruptStoreError,
    FormatError,
    NotPermittedError,
    PolicyError,
    SignatureError,
    UsageError,
    VerificationError,
)
from ledger.genesis import Genesis
from ledger.governance import (
    GovernanceBook,
    GovernanceChanges,
    GovernanceState,
    GovernanceView,
    latest_state,
    write_state,
)
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.membership import Membership
from ledger.records import Envelope, Keyring, Record, decode_body

if TYPE_CHECKING:
    from ledger.ledger_store import Ledger

_STATE = struct.Struct(">BQ")  # revoked flag, revoked-at ms; then the agreement body bytes
_HEIGHT_KEY = b"height"  # policy db: height of the last block applied (u64)
_U64 = struct.Struct(">Q")
_CERTIFIED = Limits(max_record_bytes=1 << 40)
"""A certified block's records were size-checked by the quorum under its own limits: the
policy state must not depend on this node's configured bound."""


def when(time_ms: int) -> str:
    """A block time as UTC ISO 8601, as refusal messages print it."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="milliseconds")


def short_id(agreement_id: bytes) -> str:
    return agreement_id.hex()[:16]


@dataclass(frozen=True)
class PolicyRules:
    """What the policy needs from a membership: roles by agency, and the record keys."""

    roles: Mapping[str, str]
    keyring: Keyring
    membership: Membership

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> PolicyRules:
        return cls.from_membership(Membership.from_genesis(genesis))

    @classmethod
    def from_membership(cls, membership: Membership) -> PolicyRules:
        return cls(dict(membership.roles), membership.keyring(), membership)


@dataclass(frozen=True)
class AgreementState:
    """One agreement on the ledger: its terms and, once revoked, the revocation's time."""

    agreement: Agreement
    body: bytes
    """The agreement record's body bytes (its id is their SHA-256): what is persisted."""
    revoked_at_ms: int | None = None

    def status(self, time_ms: int) -> str:
        """"active", "revoked", "expired" or "not yet in force" at ``time_ms``."""
        if self.revoked_at_ms is not None and self.revoked_at_ms <= time_ms:
            return "revoked"
        if time_ms >= self.agreement.valid_until_ms:
            return "expired"
        if time_ms < self.agreement.valid_from_ms:
            return "not yet in force"
        return "active"

    def to_bytes(self) -> bytes:
        revoked = self.revoked_at_ms is not None
        return _STATE.pack(revoked, self.revoked_at_ms or 0) + self.body

    @classmethod
    def from_bytes(cls, agreement_id: bytes, data: bytes) -> AgreementState:
        if len(data) <= _STATE.size:
            raise CorruptStoreError(f"policy entry {short_id(agreement_id)} is truncated")
        revoked, at = _STATE.unpack_from(data)
        body = data[_STATE.size:]
        if not hmac.compare_digest(hashlib.sha256(body).digest(), agreement_id):
            raise CorruptStoreError(f"policy entry {short_id(agreement_id)} does not match "
                                    "its agreement id")
        try:
            agreement = Agreement.from_body(agreement_id, decode_body(body))
        except FormatError as exc:
            raise CorruptStoreError(f"policy entry {short_id(agreement_id)}: {exc}") from exc
        return cls(agreement, body, at if revoked else None)


@dataclass(frozen=True)
class PolicyChanges:
    """The agreements one block added or revoked, and its governance changes: written in
    the block's transaction."""

    height: int
    agreements: Mapping[bytes, AgreementState]
    governance: GovernanceChanges | None = None
    """None: the block changed no governance state (same as ``GovernanceChanges(height,
    None)``)."""

    def write(self, txn: Any, db: Any, governance_db: Any = None) -> None:
        """Put the changes in the ``policy`` and ``governance`` sub-databases (inside
        ``commit_block``)."""
        for agreement_id, state in self.agreements.items():
            txn.put(agreement_id, state.to_bytes(), db=db)
        txn.put(_HEIGHT_KEY, _U64.pack(self.height), db=db)
        if governance_db is not None:
            self.governance_changes().write(txn, governance_db)

    def governance_changes(self) -> GovernanceChanges:
        if self.governance is None:
            return GovernanceChanges(self.height, None)
        if self.governance.height != self.height:
            raise UsageError(f"governance changes of block {self.governance.height} given "
                             f"with the policy changes of block {self.height}")
        return self.governance


class PolicyFacts(NamedTuple):
    """What the policy reads of a record, taken out once when the record is first decoded
    (the mempool keeps them with its verified records), so that checking a block costs a
    few dict lookups per record instead of decoding every body again."""

    kind: str
    author: str
    record_id: bytes
    target: bytes = b""
    """The agreement a sharing event or a revocation names."""
    terms: tuple[str, str, str, str] = ("", "", "", "")
    """A sharing event's provider, recipient, dataset and purpose."""
    record: Record | None = None
    """An agreement's or a governance record's whole record (checked when applied)."""
    signer: bytes = b""
    """The record key's hash: it must be in the keyring of the membership in force."""


def facts_of(record: Record) -> PolicyFacts:
    kind, body = record.kind, record.body
    signer = record.envelope.signer
    if kind == "sharing_event":
        e = body.sharing_event
        return PolicyFacts(kind, body.agency, record.record_id, e.agreement_id,
                           (e.provider, e.recipient, e.dataset, e.purpose), signer=signer)
    if kind == "revocation":
        return PolicyFacts(kind, body.agency, record.record_id, body.revocation.agreement_id,
                           signer=signer)
    if kind in ("agreement", "governance"):
        return PolicyFacts(kind, body.agency, record.record_id, record=record, signer=signer)
    return PolicyFacts(kind, body.agency, record.record_id, signer=signer)


def policy_facts(envelope: Envelope, keyring: Keyring) -> PolicyFacts:
    """Decode a record whose signature was checked (or vouched for by a certificate)."""
    key = keyring.get(envelope.signer)
    if key is None:
        raise FormatError(f"record signer {envelope.signer[:4].hex()} is not a known key")
    body = decode_body(envelope.body)
    if body.agency != key.name:
        raise FormatError(f"record claims agency {body.agency!r} but is signed by {key.name}")
    return facts_of(Record(envelope, body, key))


class PolicyView:
    """The policy state seen by one block: ``layers`` (newest first) plus its own changes,
    and the governance state (``governance``, by default the genesis state of
    ``rules.membership``). ``rules`` are those of the membership in force at the block."""

    def __init__(self, rules: PolicyRules, *layers: Mapping[bytes, AgreementState],
                 governance: GovernanceView | None = None) -> None:
        self.rules = rules
        self.changes: dict[bytes, AgreementState] = {}
        self._layers = (self.changes, *layers)
        self.governance = (governance if governance is not None
                           else GovernanceView(GovernanceState(rules.membership)))

    def block_changes(self, height: int, tree_size: int, time_ms: int | None = None
                      ) -> PolicyChanges:
        """What this view's records change, once they are block ``height`` ending at tree
        size ``tree_size``; with the block's header ``time_ms``, governance proposals
        expired by then are pruned at this block (``GovernanceView.finish``)."""
        return PolicyChanges(height, self.changes,
                             self.governance.finish(height, tree_size, time_ms))

    def get(self, agreement_id: bytes) -> AgreementState | None:
        for layer in self._layers:  # a few dict lookups: newest layer wins
            state = layer.get(agreement_id)
            if state is not None:
                return state
        return None

    def apply(self, facts: PolicyFacts, time_ms: int) -> None:
        """Check a record at ``time_ms`` and keep its effect; ``PolicyError`` if refused."""
        if facts.kind == "governance":
            self._check_author(facts)
            assert facts.record is not None
            self.governance.apply(facts.record, time_ms)
            return
        change = self.check(facts, time_ms)
        if change is not None:
            self.changes[change.agreement.agreement_id] = change

    def apply_committed(self, raws: Iterable[bytes], time_ms: int) -> None:
        """Apply a certified block's records. One that fails (only possible if a quorum
        misbehaved) changes nothing, the same on every node."""
        for raw in raws:
            try:
                envelope = Envelope.from_bytes(raw, _CERTIFIED)
                self.apply(policy_facts(envelope, self.rules.keyring), time_ms)
            except VerificationError:
                continue

    def check(self, facts: PolicyFacts, time_ms: int) -> AgreementState | None:
        """The state change a record makes (None: none); raise ``PolicyError`` if refused."""
        self._check_author(facts)
        kind = facts.kind
        if kind == "governance":
            assert facts.record is not None
            self.governance.check(facts.record, time_ms)
        elif kind == "sharing_event":
            self._check_event(facts, time_ms)
        elif kind == "agreement":
            assert facts.record is not None
            return AgreementState(verify_agreement(facts.record, self.rules.keyring),
                                  facts.record.envelope.body)
        elif kind == "revocation":
            return self._revoke(facts, time_ms)
        return None

    def _check_author(self, facts: PolicyFacts) -> None:
        author = facts.author
        if self.rules.roles.get(author) == "auditor":
            raise NotPermittedError(f"{author} is an auditor: it may read, not write")
        if facts.signer:
            key = self.rules.keyring.get(facts.signer)
            if key is None or key.name != author:
                raise SignatureError(f"record signer {facts.signer[:4].hex()} is not a record "
                                     f"key of {author} in the membership in force")

    def _revoke(self, facts: PolicyFacts, time_ms: int) -> AgreementState:
        author, agreement_id = facts.author, facts.target
        state = self.get(agreement_id)
        if state is None:
            raise PolicyError(f"cannot revoke agreement {short_id(agreement_id)}: it is not "
                              "on the ledger")
        a = state.agreement
        if author not in (a.provider, a.recipient):
            raise NotPermittedError(f"{author} may not revoke agreement "
                                    f"{short_id(agreement_id)} between {a.provider} and "
                                    f"{a.recipient}: only a party may")
        if state.revoked_at_ms is not None:
            raise PolicyError(f"agreement {short_id(agreement_id)} was already revoked at "
                              f"{when(state.revoked_at_ms)}")
        return replace(state, revoked_at_ms=time_ms)

    def _check_event(self, facts: PolicyFacts, time_ms: int) -> None:
        provider, recipient, dataset, purpose = facts.terms
        if facts.author not in (provider, recipient):
            raise NotPermittedError(f"{facts.author} may not record a sharing event from "
                                    f"{provider} to {recipient}: only the provider or the "
                                    "recipient may")
        problem = self._coverage_problem(facts.target, provider, recipient, dataset, purpose,
                                         time_ms)
        if problem is not None:
            raise PolicyError(f"no active agreement covers {provider} -> {recipient}, "
                              f"dataset {dataset!r}, purpose {purpose!r} at "
                              f"{when(time_ms)}: {problem}")

    def _coverage_problem(self, agreement_id: bytes, provider: str, recipient: str,
                          dataset: str, purpose: str, time_ms: int) -> str | None:
        """None if the named agreement covers the event, else what is wrong with it."""
        state = self.get(agreement_id)
        if (state is not None and state.agreement.covers(provider, recipient, dataset, purpose,
                                                        time_ms)
                and (state.revoked_at_ms is None or state.revoked_at_ms > time_ms)):
            return None  # the common case, in a few lookups; the rest only explains why not
        if not agreement_id:
            return "the event names no agreement (agreement_id is empty)"
        name = f"agreement {short_id(agreement_id)}"
        if state is None:
            return f"{name} is not on the ledger"
        a = state.agreement
        if state.revoked_at_ms is not None and state.revoked_at_ms <= time_ms:
            return f"{name} was revoked at {when(state.revoked_at_ms)}"
        if time_ms >= a.valid_until_ms:
            return f"{name} expired at {when(a.valid_until_ms)}"
        if time_ms < a.valid_from_ms:
            return f"{name} is not in force until {when(a.valid_from_ms)}"
        if not a.covers(provider, recipient, dataset, purpose, time_ms):
            return f"{name} covers only {a.describe()}"
        return None


def check_records(view: PolicyView, records: Sequence[PolicyFacts], time_ms: int) -> None:
    """Apply a proposed block's records in order; the error (``PolicyError``, or
    ``SignatureError`` for a key not in force, ``FormatError`` for a malformed governance
    record) names the first refused."""
    for i, facts in enumerate(records):
        try:
            view.apply(facts, time_ms)
        except VerificationError as exc:  # refused, an unknown key, a malformed proposal
            raise type(exc)(f"record {i} ({facts.record_id.hex()[:16]}): {exc}") from exc


def block_facts(raws: Sequence[bytes], keyring: Keyring, limits: Limits = DEFAULT_LIMITS
                ) -> list[PolicyFacts]:
    """Decode every record of a block (when no cached facts are at hand)."""
    return [policy_facts(Envelope.from_bytes(raw, limits), keyring) for raw in raws]


class PolicyBook:
    """A node's committed policy state: loaded from the ``policy`` sub-database and kept
    in step with the chain (``absorb`` after each ``Ledger.commit_block``), with the
    governance state (``governance``: memberships, pending proposals) beside it."""

    def __init__(self, ledger: Ledger, rules: PolicyRules) -> None:
        self.ledger = ledger
        self.genesis_rules = rules
        self._db = ledger.storage.db(b"policy")
        self.agreements: dict[bytes, AgreementState] = {}
        self.height = 0
        self.governance = GovernanceBook(ledger, rules.membership)
        self._rules: list[PolicyRules] = [rules]
        self._load()
        if self.height != ledger.head.height or self.governance.height != self.height:
            self._rebuild()

    @property
    def rules(self) -> PolicyRules:
        """The rules of the membership in force after the committed chain."""
        return self.rules_for(self.governance.membership())

    def rules_for(self, membership: Membership) -> PolicyRules:
        """The rules of ``membership`` (kept for the few memberships recently in use, so
        that a view costs no keyring rebuild)."""
        for rules in self._rules:
            if rules.membership is membership:
                return rules
        rules = PolicyRules.from_membership(membership)
        self._rules = [rules, *self._rules[:3]]
        return rules

    def _load(self) -> None:
        with self.ledger.storage.read() as txn:
            for key, value in txn.cursor(db=self._db):
                if bytes(key) == _HEIGHT_KEY:
                    self.height = _U64.unpack(value)[0]
                else:
                    state = AgreementState.from_bytes(bytes(key), bytes(value))
                    self.agreements[bytes(key)] = state

    def _rebuild(self) -> None:
        """Replay every committed block (a store written before the policy or governance
        existed, or one whose state is behind its chain), block by block: each block is
        checked against the membership in force at its height."""
        self.agreements, self.height = {}, 0
        self.governance.reset(GovernanceState(self.genesis_rules.membership), 0)
        for block in self.ledger.blocks():
            h = block.header
            self._take(self.changes_for(h.height, block.envelopes, h.time_ms,
                                        tree_size=h.tree_size))
        with self.ledger.storage.write() as txn:
            txn.drop(self._db, delete=False)
            PolicyChanges(self.height, self.agreements).write(txn, self._db)
            write_state(txn, self.ledger.storage.db(b"governance"), self.governance.state,
                        self.height)

    def view(self, staged: Sequence[PolicyChanges] = ()) -> PolicyView:
        """The state after the committed chain and then ``staged`` (oldest first)."""
        state = latest_state(self.governance.state, [c.governance for c in staged])
        return PolicyView(self.rules_for(state.current),
                          *reversed([c.agreements for c in staged]), self.agreements,
                          governance=GovernanceView(state))

    def changes_for(self, height: int, raws: Iterable[bytes], time_ms: int,
                    staged: Sequence[PolicyChanges] = (), tree_size: int | None = None
                    ) -> PolicyChanges:
        """What a certified block at ``height`` changes, on top of ``staged`` blocks.

        ``tree_size`` (the block header's) is recorded when the block adopts a membership;
        without it, the size is counted from the committed head (no staged blocks)."""
        raws = list(raws)
        view = self.view(staged)
        view.apply_committed(raws, time_ms)
        if tree_size is None:
            if staged:
                raise UsageError("changes_for on top of staged blocks needs the tree size")
            tree_size = self.ledger.head.tree_size + len(raws)
        return view.block_changes(height, tree_size, time_ms)

    def absorb(self, changes: PolicyChanges) -> None:
        """Take in a block's changes once they are durable (same transaction as the block)."""
        if changes.height != self.height + 1:
            raise UsageError(f"policy changes for block {changes.height} do not follow "
                             f"block {self.height}")
        self._take(changes)

    def _take(self, changes: PolicyChanges) -> None:
        governance = changes.governance_changes()
        if changes.agreements:  # copy on write: readers on other threads keep a whole dict
            self.agreements = {**self.agreements, **changes.agreements}
        # Governance first: a reader that sees the new height sees the new membership.
        self.governance.absorb(governance)
        self.height = changes.height

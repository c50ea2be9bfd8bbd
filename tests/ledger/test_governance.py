"""Governance: record builders and parsing, adoption rules with their messages, the
membership in force by height and by tree size, persistence (reopen, rebuild, crash
between blocks) and a model check against a reference written the simplest way."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.blocks import Block, build_block
from ledger.errors import (
    ChainError,
    FormatError,
    NotPermittedError,
    PolicyError,
    SignatureError,
    UsageError,
    VerificationError,
)
from ledger.genesis import genesis_hash
from ledger.governance import (
    APPROVE,
    PROPOSE,
    GovernanceBook,
    GovernanceState,
    GovernanceView,
    approve_body,
    parse_action,
    propose_body,
)
from ledger.ledger_store import Ledger
from ledger.membership import Membership
from ledger.policy import PolicyBook, PolicyChanges, PolicyRules, PolicyView, facts_of
from ledger.records import Envelope, sign_record
from ledger.storage import Storage, StorageConfig
from proto import ledger_pb2
from tests.ledger.governance_helpers import (
    M0,
    TAX_NEXT,
    approve,
    demote,
    next_block,
    nonce,
    propose,
    record,
    rotate_tax,
    with_approvals,
    with_validator,
)
from tests.ledger.policy_helpers import GENESIS, KEYS, NET, RULES, anchor

# --- builders and parsing -------------------------------------------------------------


def test_builders_round_trip_through_parse_action() -> None:
    new = with_validator(M0)
    p = propose("tax", new, expires_ms=5_000, summary="add validator.extra")
    action = parse_action(record(p))
    assert (action.action, action.author, action.record_id) == (PROPOSE, "tax", p.record_id)
    assert action.membership == new and action.base == M0.hash
    assert (action.expires_ms, action.summary) == (5_000, "add validator.extra")
    a = parse_action(record(approve("social", p)))
    assert (a.action, a.author, a.proposal_id) == (APPROVE, "social", p.record_id)


def _governance(**fields: object) -> Envelope:
    body = ledger_pb2.RecordBody(network=NET, agency="tax", nonce=nonce(),
                                 governance=ledger_pb2.Governance(**fields))  # type: ignore[arg-type]
    return sign_record(body, KEYS["tax"])


@pytest.mark.parametrize("fields, message", [
    ({"action": "veto"}, "governance action is 'veto'"),
    ({"action": PROPOSE, "payload": M0.to_bytes(), "base": b"\x01" * 31, "expires_ms": 9},
     "base is 31 bytes"),
    ({"action": PROPOSE, "payload": M0.to_bytes() + b" ", "base": M0.hash, "expires_ms": 9},
     "not canonically encoded"),
    ({"action": PROPOSE, "payload": M0.to_bytes().replace(b'"approvals":3,', b""),
      "base": M0.hash, "expires_ms": 9}, "not a valid"),
    ({"action": PROPOSE, "payload": M0.to_bytes(), "base": M0.hash, "proposal_id": M0.hash},
     "must not name a proposal_id"),
    ({"action": APPROVE, "proposal_id": b"\x01" * 32, "summary": "x"}, "only a proposal_id"),
    ({"action": APPROVE, "proposal_id": b"\x01" * 8}, "proposal id of 8 bytes"),
])
def test_malformed_governance_records_are_format_errors(fields: dict[str, object],
                                                        message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_action(record(_governance(**fields)))


def test_builders_set_the_body_fields() -> None:
    body = propose_body(NET, "tax", b"\x07" * 16, 12, M0, b"\x02" * 32, 99, "s")
    assert (body.network, body.agency, body.created_ms) == (NET, "tax", 12)
    assert body.governance.payload == M0.to_bytes() and body.governance.expires_ms == 99
    body = approve_body(NET, "social", b"\x07" * 16, 13, b"\x03" * 32)
    assert body.governance.proposal_id == b"\x03" * 32 and body.governance.action == APPROVE


# --- rules ------------------------------------------------------------------------------


def _view(state: GovernanceState) -> PolicyView:
    return PolicyView(PolicyRules.from_membership(state.current),
                      governance=GovernanceView(state))


def _apply(view: PolicyView, envelope: Envelope, time_ms: int) -> None:
    key = TAX_NEXT if envelope.signer == TAX_NEXT.verifier.key_hash else None
    view.apply(facts_of(record(envelope, key)), time_ms)


def _block(state: GovernanceState, envelopes: Sequence[Envelope], time_ms: int, height: int,
           size: int) -> GovernanceState:
    view = _view(state)
    for e in envelopes:
        _apply(view, e, time_ms)
    changes = view.governance.finish(height, size, time_ms)  # expired proposals pruned
    return changes.state if changes.state is not None else state


def _committed(state: GovernanceState, envelopes: Sequence[Envelope], time_ms: int,
               height: int, size: int) -> GovernanceState:
    """As ``_block``, for a certified block: refused records change nothing."""
    view = _view(state)
    for e in envelopes:
        try:
            _apply(view, e, time_ms)
        except VerificationError:
            continue
    changes = view.governance.finish(height, size, time_ms)  # expired proposals pruned
    return changes.state if changes.state is not None else state


def test_adopted_when_the_threshold_of_distinct_voters_is_reached() -> None:
    s0 = GovernanceState(M0)
    new = with_validator(M0)
    p = propose("tax", new)
    s1 = _block(s0, [p], 1_000, 1, 1)
    assert s1.pending[p.record_id].approvers == ("tax",) and s1.current == M0
    s2 = _block(s1, [approve("social", p)], 1_100, 2, 2)
    assert s2.pending[p.record_id].approvers == ("tax", "social") and not s2.transitions
    last = approve("health", p)
    s3 = _block(s2, [anchor(), last], 1_200, 3, 4)
    (t,) = s3.transitions
    assert (t.number, t.from_height, t.tree_size) == (1, 4, 4)
    assert t.membership == new and t.approvers == ("tax", "social", "health")
    assert t.record_ids[0] == p.record_id and t.record_ids[-1] == last.record_id
    assert s3.current == new and s3.pending == {}
    assert [s3.at_height(h) for h in (1, 3, 4, 9)] == [M0, M0, new, new]
    assert [s3.for_size(n) for n in (1, 4, 5)] == [M0, M0, new]
    assert s3.at_index(3) == M0 and s3.at_index(4) == new


def test_one_approval_threshold_adopts_with_the_proposal_itself() -> None:
    s0 = GovernanceState(with_approvals(M0, 1))
    new = with_validator(s0.current)
    s1 = _block(s0, [propose("health", new, base=s0.current)], 1_000, 7, 30)
    assert s1.current == new and s1.transitions[0].approval_ids == ()
    assert s1.transitions[0].from_height == 8 and s1.transitions[0].tree_size == 30


def _refused(view: PolicyView, envelope: Envelope, time_ms: int, error: type[Exception],
             message: str) -> None:
    with pytest.raises(error, match=re.escape(message)) as info:
        _apply(view, envelope, time_ms)
    assert "proposal" in str(info.value) or "auditor" in str(info.value)


def test_refusals_name_the_proposal_and_the_reason() -> None:
    s0 = GovernanceState(M0)
    p = propose("tax", with_validator(M0), expires_ms=2_000)
    s1 = _block(s0, [p, approve("social", p)], 1_000, 1, 2)
    view = _view(s1)
    short = p.record_id.hex()[:16]
    _refused(view, approve("audit", p), 1_100, NotPermittedError, "audit is an auditor")
    _refused(view, propose("audit", with_approvals(M0, 2)), 1_100, NotPermittedError,
             "auditor")
    _refused(view, approve("social", p), 1_100, PolicyError,
             f"approval of proposal {short} refused: social already approved it")
    _refused(view, approve("health", p), 2_000, PolicyError, "the proposal expired at")
    _refused(view, approve("health", b"\x05" * 32), 1_100, PolicyError,
             "no such proposal is pending")
    stale = propose("health", with_approvals(M0, 2), base=with_approvals(M0, 1))
    _refused(view, stale, 1_100, PolicyError, "is stale: its base")
    _refused(view, propose("health", with_approvals(M0, 2), expires_ms=1_100), 1_100,
             PolicyError, "expired at")
    _refused(view, propose("health", M0), 1_100, PolicyError, "already in force")
    # Refusals changed nothing: the last approval still adopts.
    _apply(view, approve("health", p), 1_999)
    assert view.governance.adopted is not None


def test_non_member_authors_are_refused_by_the_rules_themselves() -> None:
    view = GovernanceView(GovernanceState(M0))
    body = approve_body(NET, "stranger", nonce(), 0, b"\x05" * 32)
    stranger = record(sign_record(body, KEYS["tax"]), KEYS["tax"])
    with pytest.raises(NotPermittedError, match="not a member agency"):
        view.apply(stranger, 1_000)
    with pytest.raises(NotPermittedError, match="is an auditor"):
        view.apply(record(approve("audit", b"\x05" * 32)), 1_000)


def test_one_adoption_per_block_and_stale_proposals_after_it() -> None:
    s0 = GovernanceState(M0)
    a, b = propose("tax", with_validator(M0)), propose("tax", with_approvals(M0, 2))
    s1 = _block(s0, [a, b, approve("social", a), approve("social", b)], 1_000, 1, 4)
    view = _view(s1)
    _apply(view, approve("health", a), 1_100)  # adopts a
    _refused(view, approve("health", b), 1_100, PolicyError,
             f"proposal {a.record_id.hex()[:16]} was adopted earlier in this block")
    _refused(view, propose("health", with_approvals(M0, 1)), 1_100, PolicyError,
             "adopted earlier in this block")
    s2 = _block(s1, [approve("health", a)], 1_100, 2, 5)
    assert s2.current == with_validator(M0) and s2.pending == {}
    later = _view(s2)
    _refused(later, approve("health", b), 1_200, PolicyError, "no such proposal is pending")
    _refused(later, approve("social", a), 1_200, PolicyError, "already adopted (membership 1")
    _refused(later, propose("health", with_approvals(M0, 1)), 1_200, PolicyError, "stale")


def test_records_are_checked_with_the_keys_and_roles_of_the_membership_in_force() -> None:
    s0 = GovernanceState(M0)
    rotated = demote(rotate_tax(M0), "health")
    p = propose("tax", rotated)
    s1 = _block(s0, [p, approve("social", p)], 1_000, 1, 2)
    old_key_anchor = anchor("tax")
    # The adopting block is still decided by M0: old key and health's role still count.
    s2 = _block(s1, [approve("health", p), old_key_anchor, anchor("health")], 1_100, 2, 5)
    assert s2.current == rotated and rotated.approvals == 2
    view = _view(s2)
    with pytest.raises(SignatureError, match="not a record key of tax in the membership"):
        _apply(view, anchor("tax"), 1_200)
    with pytest.raises(NotPermittedError, match="health is an auditor"):
        _apply(view, anchor("health"), 1_200)
    new_key = sign_record(ledger_pb2.RecordBody(network=NET, agency="tax", nonce=nonce(),
                                                anchor=ledger_pb2.Anchor(source="r")),
                          TAX_NEXT)
    _apply(view, new_key, 1_200)
    # ... and governance votes with M1's voters and threshold: health no longer votes.
    q = propose("tax", with_approvals(rotated, 1), base=rotated, key=TAX_NEXT)
    _apply(view, q, 1_200)
    _refused(view, approve("health", q), 1_200, NotPermittedError, "auditor")


# --- persistence ------------------------------------------------------------------------


@dataclass
class Store:
    path: Path
    storage: Storage = field(init=False)
    ledger: Ledger = field(init=False)
    book: PolicyBook = field(init=False)

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        self.storage = Storage(self.path, StorageConfig(map_size=1 << 26, sync=False))
        self.ledger = Ledger(self.storage, genesis_hash(GENESIS.to_bytes()))
        self.book = PolicyBook(self.ledger, RULES)

    def reopen(self) -> None:
        self.storage.close()
        self.open()

    def changes(self, envelopes: Sequence[Envelope], time_ms: int
                ) -> tuple[PolicyChanges, Block]:
        block = next_block(self.ledger, envelopes, time_ms)
        h = block.header
        return self.book.changes_for(h.height, block.envelopes, h.time_ms,
                                     tree_size=h.tree_size), block

    def commit(self, envelopes: Sequence[Envelope], time_ms: int) -> PolicyChanges:
        changes, block = self.changes(envelopes, time_ms)
        self.ledger.commit_block(block, policy=changes)
        self.book.absorb(changes)
        return changes


def _adopt_three(store: Store) -> list[Membership]:
    """Three adoptions (a validator added, tax's key rotated, approvals lowered) and a
    pending proposal left over."""
    m1 = with_validator(M0)
    p1 = propose("tax", m1)
    store.commit([p1, approve("social", p1)], 1_000)
    store.commit([anchor(), approve("health", p1)], 1_100)
    m2 = rotate_tax(m1)
    p2 = propose("social", m2, base=m1)
    store.commit([p2, approve("health", p2), approve("tax", p2)], 1_200)
    m3 = with_approvals(m2, 2)
    p3 = propose("tax", m3, base=m2, key=TAX_NEXT)
    store.commit([p3, approve("social", p3)], 1_300)
    store.commit([approve("health", p3), propose("social", with_approvals(m3, 1), base=m3)],
                 1_400)  # adopts m3; the later proposal in the block is refused (no effect)
    p4 = propose("social", with_approvals(m3, 1), base=m3)
    store.commit([p4], 1_500)
    return [M0, m1, m2, m3]


def test_state_survives_reopen_and_rebuilds_when_missing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    memberships = _adopt_three(store)
    gov = store.book.governance
    assert [t.membership for t in gov.history()] == memberships[1:]
    assert [(t.from_height, t.tree_size) for t in gov.history()] == [(3, 4), (4, 7), (6, 11)]
    assert [gov.membership_at(h) for h in range(1, 7)] == [
        memberships[i] for i in (0, 0, 1, 2, 2, 3)]
    assert gov.membership_for_size(7) == memberships[1]
    assert gov.membership_for_size(8) == memberships[2]
    assert gov.membership() == memberships[3] and len(gov.pending()) == 1
    assert store.book.rules.membership == memberships[3]
    expected, height = gov.state, gov.height
    store.reopen()
    assert store.book.governance.state == expected and store.book.governance.height == height
    with store.storage.write() as txn:  # a store from before governance existed
        txn.drop(store.storage.db(b"governance"), delete=False)
    store.reopen()
    assert store.book.governance.state == expected and store.book.governance.height == height
    store.storage.close()


def test_crash_between_blocks_leaves_chain_and_state_together(tmp_path: Path) -> None:
    store = Store(tmp_path)
    p = propose("tax", with_validator(M0))
    store.commit([p, approve("social", p)], 1_000)
    before = store.book.governance.state
    # A block whose write fails inside the transaction (its root is wrong): nothing of
    # its governance changes is written either.
    changes, block = store.changes([approve("health", p)], 1_100)
    assert changes.governance is not None and changes.governance.new_transitions
    bad = replace(block, header=replace(block.header, tree_root=b"\x00" * 32))
    with pytest.raises(ChainError):
        store.ledger.commit_block(bad, policy=changes)
    store.reopen()
    assert store.book.governance.state == before and store.ledger.head.height == 1
    # The block written, the process gone before the in-memory state took it in.
    changes, block = store.changes([approve("health", p)], 1_100)
    store.ledger.commit_block(block, policy=changes)
    store.reopen()
    assert store.book.governance.state == changes.governance.state  # type: ignore[union-attr]
    assert store.book.governance.membership_at(3) == with_validator(M0)
    store.storage.close()


# --- model check ------------------------------------------------------------------------

VOTERS = ("tax", "social", "health")
AUTHORS = (*VOTERS, "audit")


def _candidates(m: Membership) -> list[Membership]:
    """Valid successors of ``m`` (and ``m`` itself, when a change does not apply)."""
    voters = len(m.voters)
    extra = (with_validator(m) if len(m.validators) == len(M0.validators)
             else replace(m, validators=m.validators[:len(M0.validators)]))
    return [with_approvals(m, min(k, voters)) for k in (1, 2, 3)] + [extra,
                                                                     demote(m, "health")]


_Op = tuple[str, str, Envelope, tuple[Membership | None, bytes], int]
"""(kind, author, record, (proposed membership, base) or (None, proposal id), expiry)."""


@dataclass
class _Model:
    """The adoption rules written the simplest way (no layers, no persistence)."""

    current: Membership
    pending: dict[bytes, tuple[Membership, bytes, int, list[str]]] = field(
        default_factory=dict)
    adoptions: list[tuple[int, int, Membership]] = field(default_factory=list)

    def voters(self) -> set[str]:
        return {a.name for a in self.current.agencies if a.role == "agency"}

    def block(self, ops: list[_Op], time_ms: int, height: int, size: int) -> list[str]:
        verdicts: list[str] = []
        adopted: Membership | None = None
        for kind, author, env, target, expires in ops:
            if author not in self.voters():
                verdicts.append("denied")
                continue
            if adopted is not None:
                verdicts.append("refused")
                continue
            if kind == PROPOSE:
                new, base = target
                assert isinstance(new, Membership)
                if base != self.current.hash or time_ms >= expires or new == self.current:
                    verdicts.append("refused")
                    continue
                self.pending[env.record_id] = (new, base, expires, [author])
                entry = self.pending[env.record_id]
            else:
                found = self.pending.get(target[1])
                if (found is None or found[1] != self.current.hash or time_ms >= found[2]
                        or author in found[3]):
                    verdicts.append("refused")
                    continue
                found[3].append(author)
                entry = found
            verdicts.append("ok")
            if len(entry[3]) >= self.current.approvals:
                adopted = entry[0]
        if adopted is not None:
            self.current = adopted
            self.pending = {}
            self.adoptions.append((height + 1, size, adopted))
        # pruned at the block whose time reaches their expiry
        self.pending = {pid: e for pid, e in self.pending.items() if time_ms < e[2]}
        return verdicts


@st.composite
def _scenarios(draw: st.DrawFn) -> list[list[tuple[str, int, int, bool, int]]]:
    """Blocks of steps: (kind, author index, candidate or proposal index, stale base,
    expiry offset)."""
    step = st.tuples(st.sampled_from([PROPOSE, APPROVE, APPROVE]),
                     st.integers(0, len(AUTHORS) - 1), st.integers(0, 7),
                     st.sampled_from([False, False, False, True]),
                     st.sampled_from([-1, 0, 1, 2, 3, 3]))
    return draw(st.lists(st.lists(step, max_size=4), min_size=1, max_size=7))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scenarios(), st.sampled_from([1, 2, 3]))
def test_state_matches_the_reference_model(blocks: list[list[tuple[str, int, int, bool, int]]],
                                           approvals: int) -> None:
    genesis = with_approvals(M0, approvals)
    state, model = GovernanceState(genesis), _Model(genesis)
    proposals: list[bytes] = []
    size = 0
    for height, steps in enumerate(blocks, 1):
        time_ms = 1_000 * height
        ops: list[_Op] = []
        for kind, who, pick, stale, offset in steps:
            author = AUTHORS[who]
            if kind == PROPOSE:
                new = _candidates(model.current)[pick % 5]
                base = with_approvals(model.current, 3 if model.current.approvals != 3 else 2
                                      ) if stale else model.current
                expires = max(time_ms + 1_000 * offset, 0)
                env = propose(author, new, base=base, expires_ms=expires)
                ops.append((kind, author, env, (new, base.hash), expires))
                proposals.append(env.record_id)
            else:
                recent = proposals[-3:]  # mostly the latest proposals, sometimes any
                pid = (recent[pick % len(recent)] if pick < 6 else proposals[0]
                       ) if proposals else b"\x09" * 32
                ops.append((kind, author, approve(author, pid), (None, pid), 0))
        expected = model.block(ops, time_ms, height, size + len(ops))
        view = _view(state)
        got = []
        for _, _, env, _, _ in ops:
            try:
                _apply(view, env, time_ms)
                got.append("ok")
            except NotPermittedError:
                got.append("denied")
            except PolicyError:
                got.append("refused")
        size += len(ops)
        changes = view.governance.finish(height, size, time_ms)
        state = changes.state if changes.state is not None else state
        assert got == expected
        event(f"adoptions {len(state.transitions)}")
        event(f"verdicts {sorted(set(got))}")
        assert state.current == model.current
        assert [(t.from_height, t.tree_size, t.membership) for t in state.transitions] == \
            model.adoptions
        assert {pid: list(p.approvers) for pid, p in state.pending.items()} == \
            {pid: e[3] for pid, e in model.pending.items()}


def test_expired_proposals_are_pruned_at_the_block_whose_time_passes_them() -> None:
    s0 = GovernanceState(M0)
    p = propose("tax", with_validator(M0), expires_ms=2_000)
    q = propose("social", with_approvals(M0, 2), expires_ms=3_000)
    s1 = _block(s0, [p, q], 1_000, 1, 2)
    assert set(s1.pending) == {p.record_id, q.record_id}
    before = _view(s1).governance.finish(2, 2, 1_999)  # an empty block just before
    assert before.state is None  # nothing expired: nothing to write
    at = _view(s1).governance.finish(2, 2, 2_000)  # the block whose time reaches p's expiry
    assert at.state is not None and set(at.state.pending) == {q.record_id}
    assert at.state.transitions == () and at.new_transitions == ()
    view = _view(at.state)
    _refused(view, approve("health", p), 2_100, PolicyError,
             "no such proposal is pending (unknown, expired")
    _apply(view, approve("health", q), 2_100)  # q is untouched
    assert view.governance.finish(3, 3, 2_100).state is not None


def test_pruning_is_written_with_the_block_and_survives_reopen_and_rebuild(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    p = propose("tax", with_validator(M0), expires_ms=1_250)
    store.commit([p, approve("social", p)], 1_000)
    not_yet = store.commit([], 1_200).governance
    assert not_yet is not None and not_yet.state is None  # nothing expired: nothing written
    assert [x.proposal_id for x in store.book.governance.pending()] == [p.record_id]
    changes = store.commit([anchor()], 1_250)  # expires here, with no governance record
    assert changes.governance is not None and changes.governance.state is not None
    assert store.book.governance.pending() == []
    expected = store.book.governance.state
    store.reopen()
    assert store.book.governance.state == expected and store.book.governance.pending() == []
    with store.storage.write() as txn:  # rebuilt from the blocks: pruned at the same block
        txn.drop(store.storage.db(b"governance"), delete=False)
    store.reopen()
    assert store.book.governance.state == expected and store.book.governance.height == 3
    store.storage.close()


def test_an_older_store_without_the_governance_db_opens_read_only(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.commit([anchor()], 1_000)
    with store.storage.write() as txn:  # as a store written before governance existed
        txn.drop(store.storage.db(b"governance"), delete=True)
    store.storage.close()
    with Storage(tmp_path, StorageConfig(readonly=True)) as storage:
        ledger = Ledger(storage, genesis_hash(GENESIS.to_bytes()))
        assert ledger.head.height == 1 and not storage.has_db(b"governance")
        book = GovernanceBook(ledger, M0)
        assert book.membership() == M0 and book.history() == () and book.height == 0
    store.open()  # read-write: created again, and the state rebuilt from the blocks
    assert store.storage.has_db(b"governance") and store.book.governance.height == 1
    store.storage.close()


def test_staged_blocks_layer_like_committed_ones(tmp_path: Path) -> None:
    """Changes computed on top of a staged (decided, unwritten) adoption equal those
    computed after writing it: the next block is checked with the new membership."""
    rotated = rotate_tax(M0)
    p = propose("tax", rotated)
    first = [p, approve("social", p), approve("health", p)]
    second = [anchor("tax"), propose("social", with_approvals(rotated, 2), base=rotated)]
    staged_store, plain = Store(tmp_path / "staged"), Store(tmp_path / "plain")
    try:
        c1, b1 = staged_store.changes(first, 1_000)
        frontier = merkle.Frontier()
        frontier.extend(merkle.leaf_hashes(b1.envelopes))
        b2 = build_block(NET, b1.header, b1.hash, [e.raw for e in second], frontier, 1_100,
                         b"\x00" * 32)
        with pytest.raises(UsageError, match="needs the tree size"):
            staged_store.book.changes_for(2, b2.envelopes, 1_100, [c1])
        c2 = staged_store.book.changes_for(2, b2.envelopes, 1_100, [c1],
                                           tree_size=b2.header.tree_size)
        assert staged_store.book.view([c1, c2]).rules.membership == rotated
        plain.commit(first, 1_000)
        assert plain.commit(second, 1_100) == c2  # old tax key: ignored in both
        assert c2.governance is not None and c2.governance.state is not None
        assert [p.author for p in c2.governance.state.pending.values()] == ["social"]
    finally:
        staged_store.storage.close()
        plain.storage.close()



@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scenarios(), st.lists(st.booleans(), min_size=7, max_size=7))
def test_stored_state_equals_the_state_computed_in_memory(
        blocks: list[list[tuple[str, int, int, bool, int]]], reopen_after: list[bool]) -> None:
    """Committed through LMDB with restarts between blocks, then rebuilt from the blocks
    alone: always the state the views compute in memory."""
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder))
        state = GovernanceState(M0)
        proposals: list[bytes] = []
        try:
            for height, steps in enumerate(blocks, 1):
                time_ms = 1_000 * height
                records: list[Envelope] = [anchor()]
                for kind, who, pick, stale, offset in steps:
                    author = AUTHORS[who]
                    if kind == PROPOSE:
                        new = _candidates(state.current)[pick % 5]
                        base = with_approvals(state.current, 1) if stale else state.current
                        env = propose(author, new, base=base,
                                      expires_ms=max(time_ms + 1_000 * offset, 0))
                        proposals.append(env.record_id)
                    else:
                        pid = proposals[-1 - pick % len(proposals)] if proposals else bytes(32)
                        env = approve(author, pid)
                    records.append(env)
                size = store.ledger.head.tree_size + len(records)
                state = _committed(state, records, time_ms, height, size)
                store.commit(records, time_ms)
                if reopen_after[height - 1]:
                    store.reopen()
                assert store.book.governance.state == state
            with store.storage.write() as txn:
                txn.drop(store.storage.db(b"governance"), delete=False)
            store.reopen()
            assert store.book.governance.state == state
            assert store.book.rules.membership == state.current
        finally:
            store.storage.close()

"""The sharing policy: rules with their messages, layering, persistence, and a model check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.blocks import Block, build_block
from ledger.errors import NotPermittedError, PolicyError, SignatureError
from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.merkle import Frontier
from ledger.policy import (
    AgreementState,
    PolicyBook,
    PolicyView,
    block_facts,
    check_records,
    policy_facts,
)
from ledger.records import Envelope
from ledger.storage import Storage, StorageConfig
from tests.ledger.policy_helpers import (
    GENESIS,
    KEYS,
    NET,
    RULES,
    agreement,
    anchor,
    event,
    revocation,
)


def _apply(view: PolicyView, envelope: Envelope, time_ms: int) -> None:
    view.apply(policy_facts(envelope, RULES.keyring), time_ms)


def _view_with(*envelopes: Envelope, time_ms: int = 1_500) -> PolicyView:
    view = PolicyView(RULES)
    for envelope in envelopes:
        _apply(view, envelope, time_ms)
    return view


def test_covered_event_passes_and_an_agreement_becomes_state() -> None:
    a = agreement()
    view = _view_with(a)
    state = view.get(a.record_id)
    assert state is not None and state.revoked_at_ms is None
    assert state.status(1_500) == "active" and state.status(2_000) == "expired"
    assert state.status(999) == "not yet in force"
    _apply(view, event(a.record_id), 1_999)
    _apply(view, event(a.record_id, author="social"), 1_000)  # the recipient may record it


@pytest.mark.parametrize(("make", "time_ms", "message"), [
    (lambda aid: event(b""), 1_500, "names no agreement"),
    (lambda aid: event(b"\x01" * 32), 1_500, "agreement 0101010101010101 is not on the ledger"),
    (lambda aid: event(aid), 2_000, "expired at 1970-01-01T00:00:02.000+00:00"),
    (lambda aid: event(aid), 999, "is not in force until 1970-01-01T00:00:01.000+00:00"),
    (lambda aid: event(aid, dataset="health"), 1_500, "covers only tax -> social"),
    (lambda aid: event(aid, purpose="fraud"), 1_500, "purpose 'benefits'"),
    (lambda aid: event(aid, provider="social", recipient="tax"), 1_500, "covers only"),
])
def test_uncovered_events_are_refused_naming_what_is_missing(make, time_ms, message) -> None:
    a = agreement()
    view = _view_with(a)
    e = make(a.record_id)
    provider, recipient, dataset, purpose = policy_facts(e, RULES.keyring).terms
    with pytest.raises(PolicyError) as err:
        _apply(view, e, time_ms)
    assert not isinstance(err.value, NotPermittedError)
    text = str(err.value)
    assert message in text
    assert (f"no active agreement covers {provider} -> {recipient}, dataset "
            f"{dataset!r}, purpose {purpose!r} at ") in text


def test_revocation_stops_events_from_its_block_time_on() -> None:
    a = agreement()
    view = _view_with(a)
    with pytest.raises(NotPermittedError, match=r"health may not revoke .* only a party"):
        _apply(view, revocation(a.record_id, author="health"), 1_200)
    _apply(view, revocation(a.record_id, author="social"), 1_200)
    with pytest.raises(PolicyError, match=r"was revoked at 1970-01-01T00:00:01\.200"):
        _apply(view, event(a.record_id), 1_200)
    with pytest.raises(PolicyError, match="already revoked"):
        _apply(view, revocation(a.record_id), 1_300)
    with pytest.raises(PolicyError, match="not on the ledger"):
        _apply(view, revocation(b"\x02" * 32), 1_300)


def test_who_may_write() -> None:
    a = agreement()
    view = _view_with(a)
    with pytest.raises(NotPermittedError, match="health may not record a sharing event from "
                       "tax to social"):
        _apply(view, event(a.record_id, author="health"), 1_500)
    for record in (anchor("audit"), event(a.record_id, provider="audit", recipient="tax")):
        with pytest.raises(NotPermittedError, match="audit is an auditor: it may read, not"):
            _apply(view, record, 1_500)
    with pytest.raises(NotPermittedError, match="auditor"):
        _apply(view, agreement(provider="audit", recipient="tax"), 1_500)
    _apply(view, anchor("health"), 1_500)  # anchors need no agreement


def test_an_agreement_without_consent_is_refused() -> None:
    from ledger.agreements import agreement_body
    from ledger.records import sign_record

    body = agreement_body(network=NET, author="tax", provider="tax", recipient="social",
                          datasets=["income"], purpose="p", legal_basis="b", valid_from_ms=0,
                          valid_until_ms=10, countersigner=KEYS["social"].verifier,
                          nonce=b"\x05" * 16, created_ms=0)
    with pytest.raises(SignatureError, match="countersignature"):
        _apply(PolicyView(RULES), sign_record(body, KEYS["tax"]), 5)


def test_block_order_counts_and_layers_see_staged_blocks() -> None:
    a = agreement()
    # Within a block, an event after its agreement passes; before it, it is refused.
    in_order = block_facts([a.raw, event(a.record_id).raw], RULES.keyring)
    check_records(PolicyView(RULES), in_order, 1_500)
    with pytest.raises(PolicyError, match=r"record 0 \([0-9a-f]{16}\): no active agreement"):
        check_records(PolicyView(RULES), in_order[::-1], 1_500)
    # A staged block's changes are a layer below the next block's own.
    staged = _view_with(a).changes
    above = PolicyView(RULES, staged, {})
    check_records(above, block_facts([revocation(a.record_id).raw], RULES.keyring), 1_600)
    assert staged[a.record_id].revoked_at_ms is None  # the layer below is not touched
    revoked = above.get(a.record_id)
    assert revoked is not None and revoked.revoked_at_ms == 1_600


def test_state_round_trips_through_bytes() -> None:
    a = agreement(datasets=("income", "household"))
    state = _view_with(a).get(a.record_id)
    assert state is not None
    for s in (state, AgreementState(state.agreement, state.body, 0)):
        assert AgreementState.from_bytes(a.record_id, s.to_bytes()) == s


# --- persistence ------------------------------------------------------------------------


def _chain(batches: list[tuple[int, list[Envelope]]]) -> list[Block]:
    frontier, parent, out = Frontier(), None, []
    prev = genesis_hash(GENESIS.to_bytes())
    for time_ms, envelopes in batches:
        block = build_block(NET, parent, prev, [e.raw for e in envelopes], frontier, time_ms,
                            b"\x00" * 32)
        parent, prev = block.header, block.hash
        out.append(block)
    return out


def _open(path: Path) -> tuple[Storage, Ledger, PolicyBook]:
    storage = Storage(path, StorageConfig(map_size=1 << 26))
    ledger = Ledger(storage, genesis_hash(GENESIS.to_bytes()))
    return storage, ledger, PolicyBook(ledger, RULES)


def test_committed_state_survives_restart_and_rebuilds_when_missing(tmp_path: Path) -> None:
    a, b = agreement(), agreement(provider="health", recipient="tax", valid=(0, 5_000))
    chain = _chain([(1_100, [a, anchor()]), (1_200, [event(a.record_id), b]),
                    (1_300, [revocation(a.record_id, author="social")]),
                    (1_400, [event(a.record_id)])])  # certified but refused: no effect
    storage, ledger, book = _open(tmp_path)
    for block in chain:
        changes = book.changes_for(block.header.height, block.envelopes, block.header.time_ms)
        ledger.commit_block(block, policy=changes)
        book.absorb(changes)
    expected = dict(book.agreements)
    assert expected[a.record_id].revoked_at_ms == 1_300
    assert expected[b.record_id].revoked_at_ms is None and book.height == 4
    storage.close()
    storage, ledger, book = _open(tmp_path)
    assert book.agreements == expected and book.height == 4
    with storage.write() as txn:  # a store from before the policy existed
        txn.drop(storage.db(b"policy"), delete=False)
    storage.close()
    storage, ledger, book = _open(tmp_path)
    assert book.agreements == expected and book.height == 4
    storage.close()


# --- model check ------------------------------------------------------------------------


@dataclass
class _Model:
    """The rules written the simplest way, to compare the real state against."""

    terms: dict[bytes, tuple[str, str, frozenset[str], str, int, int]] = field(
        default_factory=dict)
    revoked: dict[bytes, int] = field(default_factory=dict)

    def accepts(self, op: tuple, time_ms: int) -> bool:
        kind, author = op[0], op[1]
        if author == "audit":
            return False
        if kind == "agree":
            return True
        aid = op[2]
        if aid not in self.terms:
            return False
        provider, recipient, datasets, purpose, start, end = self.terms[aid]
        if kind == "revoke":
            return author in (provider, recipient) and aid not in self.revoked
        _, _, _, p, r, d, u = op
        return (author in (p, r) and (p, r, u) == (provider, recipient, purpose)
                and d in datasets and start <= time_ms < end
                and self.revoked.get(aid, time_ms + 1) > time_ms)

    def apply(self, op: tuple, envelope: Envelope, time_ms: int) -> None:
        if op[0] == "agree":
            self.terms[envelope.record_id] = op[2]
        elif op[0] == "revoke":
            self.revoked[op[2]] = time_ms


PARTIES = st.sampled_from([("tax", "social"), ("social", "tax"), ("health", "tax")])
DATASET = st.sampled_from(["income", "household"])
PURPOSE = st.sampled_from(["benefits", "fraud"])
WHO = st.sampled_from(["provider", "recipient", "provider", "recipient", "health", "audit"])
TARGET = st.integers(0, 3).map(lambda i: min(i, 2) if i < 3 else 5)  # mostly known ones


@st.composite
def _ops(draw: st.DrawFn) -> list[tuple[int, list[tuple]]]:
    """Blocks (time, ops). An op names its agreement by its position among those drafted
    so far (a position beyond them: an unknown id) and its author by role."""
    blocks, time_ms = [], 0
    for height in range(draw(st.integers(1, 8))):
        time_ms += 10 * draw(st.integers(0, 2))  # coarse times: boundaries get hit
        ops = []
        for i in range(draw(st.integers(0, 5))):
            kind = "agree" if height == 0 and i < 2 else draw(
                st.sampled_from(["agree", "revoke", "event", "event", "event"]))
            if kind == "agree":
                (p, r), start = draw(PARTIES), 10 * draw(st.integers(0, 3))
                datasets = frozenset(draw(st.sets(DATASET, min_size=1)))
                terms = (p, r, datasets, draw(PURPOSE), start, start + 10 * draw(st.integers(1, 6)))
                who = st.sampled_from(["provider", "recipient", "provider", "audit"])
                ops.append(("agree", draw(who), terms))
            elif kind == "revoke":
                ops.append(("revoke", draw(WHO), draw(TARGET)))
            else:  # its own terms, or (often) those of the agreement it names
                own = (*draw(PARTIES), draw(DATASET), draw(PURPOSE))
                ops.append(("event", draw(WHO), draw(TARGET),
                            own if draw(st.integers(0, 3)) == 0 else None))
        blocks.append((time_ms, ops))
    return blocks


def _author(who: str, provider: str, recipient: str) -> str:
    return {"provider": provider, "recipient": recipient}.get(who, who)


def _envelope(op: tuple, drafted: list[tuple[bytes, tuple]]) -> tuple[tuple, Envelope]:
    """The signed record for ``op``, and the op as the model sees it (author's name,
    agreement id, event terms)."""
    if op[0] == "agree":
        p, r, datasets, purpose, start, end = op[2]
        author = _author(op[1], p, r)
        if author == "audit":  # an auditor's agreement, countersigned by the provider
            return ("agree", "audit", op[2]), agreement(
                p, "audit", tuple(sorted(datasets)), purpose, (start, end), author="audit")
        return ("agree", author, op[2]), agreement(p, r, tuple(sorted(datasets)), purpose,
                                                   (start, end), author)
    known = op[2] < len(drafted)
    aid, terms = drafted[op[2]] if known else (bytes([op[2] + 1]) * 32, None)
    p, r = (terms[0], terms[1]) if terms else ("tax", "social")
    if op[0] == "revoke":
        author = _author(op[1], p, r)
        return ("revoke", author, aid), revocation(aid, author)
    if op[3] is not None or terms is None:
        p, r, d, u = op[3] or ("tax", "social", "income", "benefits")
    else:
        d, u = min(terms[2]), terms[3]
    author = _author(op[1], p, r)
    return ("event", author, aid, p, r, d, u), event(aid, p, r, d, u, author=author)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops())
def test_random_histories_agree_with_a_simple_model(blocks: list[tuple[int, list]]) -> None:
    model, drafted = _Model(), []
    layers: list[dict[bytes, AgreementState]] = []
    for time_ms, ops in blocks:
        view = PolicyView(RULES, *reversed(layers))  # earlier blocks staged below
        for op in ops:
            resolved, envelope = _envelope(op, drafted)
            want = model.accepts(resolved, time_ms)
            try:
                _apply(view, envelope, time_ms)
                got = True
            except PolicyError:
                got = False
            assert got == want, (resolved, time_ms)
            if got:
                model.apply(resolved, envelope, time_ms)
                if op[0] == "agree":
                    drafted.append((envelope.record_id, op[2]))
        layers.append(view.changes)
    final = PolicyView(RULES, *reversed(layers))
    for aid, terms in model.terms.items():
        state = final.get(aid)
        assert state is not None
        a = state.agreement
        assert (a.provider, a.recipient, a.datasets, a.purpose, a.valid_from_ms,
                a.valid_until_ms) == terms
        assert state.revoked_at_ms == model.revoked.get(aid)

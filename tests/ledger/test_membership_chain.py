"""The membership chain: built from a ledger that went through validator- and record-key
rotations, verified from the genesis alone; receipts and consistency proofs across the
changes; tampered chains refused with a message naming the transition and the fault."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import SignatureError
from ledger.genesis import TrustRoot
from ledger.keys import decode_base64, encode_base64
from ledger.membership_chain import (
    MembershipChainError,
    MembershipHistory,
    build_chain,
    verify_chain,
)
from ledger.receipts import ConsistencyProof, verify_checkpoint_consistency, verify_receipt
from ledger.tlogproof import TlogProof
from tests.ledger.governance_helpers import M0, approve, propose, with_approvals
from tests.ledger.governance_ledger import (
    CHAIN_ID,
    M1,
    M2,
    M3,
    V4,
    V5,
    GovLedger,
    build_governed,
    signing_keys,
)
from tests.ledger.policy_helpers import GENESIS, NET, VALIDATOR_KEYS


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovLedger]:
    g = build_governed(tmp_path_factory.mktemp("governed"))
    yield g
    g.close()


TRUST = TrustRoot(tuple(GENESIS.validator_keys), GENESIS.threshold, NET, GENESIS.keyring(),
                  CHAIN_ID)


def test_chain_verifies_from_the_genesis_alone(governed: GovLedger) -> None:
    history = verify_chain(governed.chain(), GENESIS)
    gov = governed.book.governance
    assert history.memberships == (M0, M1, M2, M3)
    assert history.sizes == tuple(t.tree_size for t in gov.history()) == (7, 11, 16)
    for size in range(1, governed.ledger.tree.size + 1):
        assert history.for_size(size) == gov.membership_for_size(size)
    assert history.at_index(6) == M0 and history.at_index(7) == M1
    assert history.at_index(10) == M1 and history.at_index(11) == M2
    ranges = history.key_ranges()
    tax_old = M0.agency("tax").record_keys[0].key_hash  # type: ignore[union-attr]
    tax_new = M2.agency("tax").record_keys[0].key_hash  # type: ignore[union-attr]
    assert ranges[tax_old] == [(0, 11)] and ranges[tax_new] == [(11, -1)]
    assert verify_chain(build_chain(governed.ledger, NET, ()), GENESIS) == \
        MembershipHistory.genesis_only(GENESIS)


def _receipt(g: GovLedger, index: int, size: int | None = None) -> tuple[bytes, bytes]:
    return g.ledger.receipt(index, size), g.ledger.record(index)


def test_old_and_new_receipts_verify_with_the_chain(governed: GovLedger) -> None:
    history = verify_chain(governed.chain(), GENESIS)
    latest = governed.ledger.tree.size
    for index, size in [(0, 2), (0, 7), (0, latest), (11, latest), (15, 16), (17, latest)]:
        receipt, record = _receipt(governed, index, size)
        result = verify_receipt(receipt, record, TRUST, history=history)
        assert result.index == index and result.checkpoint.size == size
        assert result.record is not None
        assert result.record.signer.name == result.record.body.agency
    # tax's rotated key signs records from index 11 on: known only through the chain.
    receipt, record = _receipt(governed, 11, latest)
    with pytest.raises(SignatureError, match="pass --chain"):
        verify_receipt(receipt, record, TRUST)
    receipt, record = _receipt(governed, 0, 2)  # before any change: the genesis suffices
    assert verify_receipt(receipt, record, TRUST).checkpoint.size == 2


def test_consistency_across_changes_needs_each_sizes_signers(governed: GovLedger) -> None:
    history = verify_chain(governed.chain(), GENESIS)
    latest = governed.ledger.tree.size
    old, new = governed.ledger.checkpoint(2), governed.ledger.checkpoint(latest)
    assert old is not None and new is not None
    proof = ConsistencyProof(2, latest, tuple(governed.ledger.consistency_proof(2, latest)))
    a, b = verify_checkpoint_consistency(old, new, proof.to_bytes(), TRUST, history=history)
    assert (a.size, b.size) == (2, latest)
    with pytest.raises(SignatureError, match="signed by validators not in the genesis"):
        verify_checkpoint_consistency(old, new, proof.to_bytes(), TRUST)


def test_checkpoint_signed_by_a_removed_validator_set_after_its_removal_is_refused(
        governed: GovLedger) -> None:
    history = verify_chain(governed.chain(), GENESIS)
    size = 10  # after T_1 = 7, before T_2 = 11: M1 (V0, V1, V2, V4) signs; V3 was removed
    checkpoint = Checkpoint(NET, size, governed.ledger.tree.root(size))
    by_m0 = sign_checkpoint(checkpoint, [VALIDATOR_KEYS[3], VALIDATOR_KEYS[1],
                                         VALIDATOR_KEYS[2]])
    receipt = TlogProof(5, tuple(governed.ledger.tree.inclusion_proof(5, size)),
                        by_m0).to_bytes()
    with pytest.raises(SignatureError, match=re.escape(
            "2 of 4 signatures, need 3 (membership 1 signs this size); signatures by keys "
            "not trusted for this size: validator.audit")):
        verify_receipt(receipt, governed.ledger.record(5), TRUST, history=history)
    # The same set was right for sizes up to T_1 = 7 (the adopting block's checkpoint).
    at_t1 = sign_checkpoint(Checkpoint(NET, 7, governed.ledger.tree.root(7)),
                            [VALIDATOR_KEYS[3], VALIDATOR_KEYS[1], VALIDATOR_KEYS[2]])
    receipt = TlogProof(5, tuple(governed.ledger.tree.inclusion_proof(5, 7)), at_t1).to_bytes()
    assert verify_receipt(receipt, governed.ledger.record(5), TRUST,
                          history=history).checkpoint.size == 7
    assert signing_keys(M3)[-1] == V5 and V4 in signing_keys(M1)


# --- tampered chains ---------------------------------------------------------------------


def _edit(chain: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(chain)
    change(doc)
    return json.dumps(doc).encode()


def _flip_approval(doc: dict[str, Any]) -> None:
    item = doc["transitions"][0]["records"][1]
    raw = bytearray(decode_base64(item["envelope"], "envelope"))
    raw[-1] ^= 1  # the signature's last byte
    item["envelope"] = encode_base64(bytes(raw))


def _drop_approval(doc: dict[str, Any]) -> None:
    del doc["transitions"][1]["records"][-1]


def _wrong_checkpoint(doc: dict[str, Any]) -> None:
    doc["transitions"][1]["checkpoint"] = doc["transitions"][0]["checkpoint"]


def _reorder(doc: dict[str, Any]) -> None:
    records = doc["transitions"][0]["records"]
    records[1], records[2] = records[2], records[1]


def _approval_first(doc: dict[str, Any]) -> None:
    del doc["transitions"][0]["records"][0]


def _bigger_size(doc: dict[str, Any]) -> None:
    doc["transitions"][0]["tree_size"] += 1


@pytest.mark.parametrize("change, message", [
    (_flip_approval, "transition 1: record 3 is not in the checkpointed tree"),
    (_drop_approval, "transition 2: 2 distinct approvals, membership 1 adopts with exactly 3"),
    (_wrong_checkpoint, "transition 2: checkpoint is for size 7, the transition says 11"),
    (_reorder, "transition 1: records are not in ledger order"),
    (_approval_first, "transition 1: record 3 is an approval, the first must be the proposal"),
    (_bigger_size, "transition 1: checkpoint is for size 7, the transition says 8"),
])
def test_tampered_chain_is_refused_with_a_clear_message(
        governed: GovLedger, change: Callable[[dict[str, Any]], None], message: str) -> None:
    with pytest.raises(MembershipChainError, match=message):
        verify_chain(_edit(governed.chain(), change), GENESIS)


def test_chain_with_a_wrong_base_or_foreign_records_is_refused(tmp_path: Path) -> None:
    """Records a Byzantine quorum let in (a stale proposal and its approvals) cannot make
    a transition: the chain names the wrong base."""
    g = GovLedger(tmp_path)
    try:
        stale = propose("tax", with_approvals(M0, 2), base=with_approvals(M0, 1))
        g.commit([stale, approve("social", stale), approve("health", stale)])
        assert g.book.governance.history() == ()  # refused: no effect on the state
        chain = json.loads(build_chain(g.ledger, NET, ()))
        records = [{"index": i, "envelope": encode_base64(g.ledger.record(i)),
                    "proof": [encode_base64(h) for h in g.ledger.tree.inclusion_proof(i, 3)]}
                   for i in range(3)]
        note = g.ledger.checkpoint(3)
        assert note is not None
        chain["transitions"] = [{"number": 1, "tree_size": 3, "checkpoint": note.decode(),
                                 "records": records}]
        with pytest.raises(MembershipChainError, match="transition 1: proposal 0 has base"):
            verify_chain(json.dumps(chain).encode(), GENESIS)
        chain["network"] = "other.example"
        with pytest.raises(MembershipChainError, match=re.escape("is for network 'other.example'")):
            verify_chain(json.dumps(chain).encode(), GENESIS)
    finally:
        g.close()


def test_transition_checkpoint_signed_by_the_removed_set_is_refused(
        governed: GovLedger) -> None:
    """Transition 2 must be checkpointed by M1: V3, removed by transition 1, and two
    validators still in M1 are not a quorum of M1 even though they were one of M0."""
    note = sign_checkpoint(Checkpoint(NET, 11, governed.ledger.tree.root(11)),
                           [VALIDATOR_KEYS[1], VALIDATOR_KEYS[2], VALIDATOR_KEYS[3]])

    def resign(doc: dict[str, Any]) -> None:
        doc["transitions"][1]["checkpoint"] = note.decode()

    with pytest.raises(MembershipChainError, match=re.escape(
            "transition 2: checkpoint not signed by a quorum of membership 1's validators "
            "(2 of 4 signatures, need 3)")):
        verify_chain(_edit(governed.chain(), resign), GENESIS)


def test_a_prefix_of_the_chain_is_what_an_auditor_knew_then(governed: GovLedger) -> None:
    short = _edit(governed.chain(), lambda doc: doc["transitions"].pop())
    history = verify_chain(short, GENESIS)
    assert history.memberships == (M0, M1, M2) and history.sizes == (7, 11)
    assert history.for_size(governed.ledger.tree.size) == M2

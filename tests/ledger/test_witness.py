"""C2SP tlog-witness add-checkpoint: the witness's decision (ledger.witness), split-view
evidence (ledger.splitview) and witness quorums (ledger.witness_policy)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import verify_cosignatures
from ledger.errors import FormatError, SignatureError, UsageError, VerificationError
from ledger.genesis import TrustRoot
from ledger.keys import ALG_COSIGNATURE_V1, SigningKey
from ledger.note import Note
from ledger.splitview import EvidenceFile, verify_split_view
from ledger.witness import (
    AddCheckpoint,
    Cosigned,
    Decision,
    Evidence,
    LogTrust,
    decide,
    parse_cosignature_lines,
    parse_size_body,
    verify_response,
)
from ledger.witness_policy import WitnessPolicy, check_witnesses, parse_policy, require_witnesses

ORIGIN = "witness-test.example/v1"
NOW = 1_700_000_000


def _key(name: str, alg: int = 0x01) -> SigningKey:
    return SigningKey(name, hashlib.sha256(name.encode()).digest(), alg)


VALIDATORS = [_key(f"validator-{i}") for i in range(4)]
WITNESS = _key("audit-office/w1", ALG_COSIGNATURE_V1)
TRUST = LogTrust(ORIGIN, tuple(k.verifier for k in VALIDATORS), 3)
TRUST_ROOT = TrustRoot(TRUST.validators, 3, ORIGIN)


def leaves(n: int, tag: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(tag + i.to_bytes(4, "big")) for i in range(n)]


TREE = merkle.MemoryTree(leaves(64))
FORK = merkle.MemoryTree(leaves(10) + leaves(54, b"fork"))


def note(size: int, tree: merkle.MemoryTree = TREE, signers: int = 3) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, size, tree.root(size)), VALIDATORS[:signers])


def request(old: int, size: int, tree: merkle.MemoryTree = TREE, signers: int = 3) -> bytes:
    proof = merkle.prove_consistency(tree, old, size) if 0 < old < size else []
    return AddCheckpoint(old, tuple(proof), note(size, tree, signers)).to_bytes()


class FakeWitness:
    """The state ``decide`` runs over, kept the way the daemon's store keeps it."""

    def __init__(self) -> None:
        self.latest: Cosigned | None = None
        self.history: dict[int, bytes] = {}

    def add(self, body: bytes) -> Decision:
        decision = decide(body, TRUST, self.latest, self.history.get, WITNESS, NOW)
        if decision.accept is not None:
            self.latest = decision.accept
            self.history.setdefault(decision.accept.checkpoint.size, decision.accept.note)
        return decision


@pytest.fixture
def witness() -> FakeWitness:
    return FakeWitness()


def test_first_checkpoint_is_cosigned_and_the_answer_verifies(witness: FakeWitness) -> None:
    d = witness.add(request(0, 5))
    assert d.status == 200
    lines = parse_cosignature_lines(d.body)
    assert [s.name for s in lines] == ["audit-office/w1"]
    cosigned = Note.from_bytes(note(5)).with_signatures(lines).to_bytes()
    result = verify_cosignatures(cosigned, [WITNESS.verifier])
    assert [c.timestamp for c in result.cosignatures] == [NOW]
    assert verify_response(Checkpoint(ORIGIN, 5, TREE.root(5)), d.body, WITNESS.verifier)


def test_consistent_checkpoints_follow_each_other(witness: FakeWitness) -> None:
    for old, new in [(0, 1), (1, 7), (7, 8), (8, 8), (8, 64)]:
        assert witness.add(request(old, new)).status == 200, (old, new)
    assert witness.latest is not None and witness.latest.checkpoint.size == 64


def test_stale_old_size_gets_409_with_the_latest_size(witness: FakeWitness) -> None:
    witness.add(request(0, 10))
    d = witness.add(request(0, 12))
    assert d.status == 409 and d.content_type == "text/x.tlog.size"
    assert parse_size_body(d.body) == 10 and d.evidence is None
    assert witness.add(request(10, 12)).status == 200


def test_bad_consistency_proof_gets_422_and_is_kept(witness: FakeWitness) -> None:
    witness.add(request(0, 12))  # FORK shares only the first 10 leaves
    forged = AddCheckpoint(12, tuple(merkle.prove_consistency(FORK, 12, 20)),
                           note(20, FORK)).to_bytes()
    d = witness.add(forged)
    assert d.status == 422 and d.accept is None
    assert d.evidence is not None and d.evidence.kind == "bad-consistency-proof"
    assert witness.latest is not None and witness.latest.checkpoint.size == 12


def test_split_view_at_one_size_is_refused_with_evidence(witness: FakeWitness) -> None:
    witness.add(request(0, 10))
    witness.add(request(10, 30))
    for old in (30, 0, 10):  # whatever old size the liar claims
        d = witness.add(AddCheckpoint(old, (), note(30, FORK)).to_bytes())
        assert d.status == 409 and d.evidence is not None, old
        assert d.evidence.kind == "same-size" and d.evidence.seen == note(30)
    # An older size the witness passed long ago is still remembered.
    d = witness.add(request(0, 10, FORK))
    assert d.status == 409 and d.evidence is None  # same root at 10: the fork starts later
    d = witness.add(AddCheckpoint(0, (), note(30, FORK)).to_bytes())
    assert d.evidence is not None


def test_split_view_evidence_verifies_offline(witness: FakeWitness) -> None:
    witness.add(request(0, 30))
    d = witness.add(AddCheckpoint(30, (), note(30, FORK)).to_bytes())
    assert d.evidence is not None
    data = EvidenceFile(d.evidence, ORIGIN, NOW, WITNESS.verifier.to_vkey()).to_bytes()
    verdict = verify_split_view(data, TRUST_ROOT)
    assert verdict.conclusive and verdict.seen.size == verdict.shown.size == 30
    assert verdict.double_signers == ("validator-0", "validator-1", "validator-2")


def test_evidence_that_proves_nothing_is_refused() -> None:
    same = EvidenceFile(_evidence("same-size", note(30), note(30, signers=4)), ORIGIN, NOW, "")
    with pytest.raises(VerificationError, match="agree"):
        verify_split_view(same.to_bytes(), TRUST_ROOT)
    weak = EvidenceFile(_evidence("same-size", note(30), note(30, FORK, signers=2)), ORIGIN,
                        NOW, "")
    with pytest.raises(SignatureError, match="need 3"):
        verify_split_view(weak.to_bytes(), TRUST_ROOT)
    good_proof = tuple(merkle.prove_consistency(TREE, 10, 20))
    consistent = EvidenceFile(_evidence("bad-consistency-proof", note(10), note(20),
                                        good_proof), ORIGIN, NOW, "")
    with pytest.raises(VerificationError, match="consistent"):
        verify_split_view(consistent.to_bytes(), TRUST_ROOT)
    bad = EvidenceFile(_evidence("bad-consistency-proof", note(10), note(20, FORK),
                                 good_proof), ORIGIN, NOW, "")
    assert not verify_split_view(bad.to_bytes(), TRUST_ROOT).conclusive
    with pytest.raises(FormatError):
        verify_split_view(b'{"format": "other"}', TRUST_ROOT)


def _evidence(kind: str, seen: bytes, shown: bytes, proof: tuple[bytes, ...] = ()
              ) -> Evidence:
    return Evidence(kind, seen, shown, proof)


@pytest.mark.parametrize(("body", "status", "reason"), [
    (lambda: request(0, 5, signers=2), 403, "not final"),
    (lambda: AddCheckpoint(0, (), sign_checkpoint(Checkpoint("other.example/log", 5,
                                                             TREE.root(5)), VALIDATORS[:3])
                           ).to_bytes(), 404, "unknown log"),
    (lambda: request(0, 5).replace(b"\xe2\x80\x94 validator-0 ", b"\xe2\x80\x94 validator-0 A"),
     400, "malformed"),
    (lambda: _tampered_signature(), 403, "signature"),
    (lambda: AddCheckpoint(9, (), note(5)).to_bytes(), 400, "above"),
    (lambda: b"old 01\n\n" + note(5), 400, "leading zeros"),
    (lambda: b"new 1\n\n" + note(5), 400, "old"),
    (lambda: b"old 0\n" + note(5), 400, "malformed"),
    (lambda: AddCheckpoint(0, (bytes(32),), note(5)).to_bytes(), 422, "empty"),
    (lambda: b"old 0\n" + b"AAAA\n" * 64 + b"\n" + note(5), 400, "63"),
])
def test_bad_requests_get_the_spec_status(witness: FakeWitness, body: Callable[[], bytes],
                                          status: int, reason: str) -> None:
    d = witness.add(body())
    assert d.status == status and reason in d.reason, d.reason
    assert d.accept is None and witness.latest is None


def _tampered_signature() -> bytes:
    n = Note.from_bytes(note(5))
    sig = n.signatures[0]
    bad = type(sig)(sig.name, sig.key_id, bytes(64))
    return AddCheckpoint(0, (), Note(n.text, (bad, *n.signatures[1:])).to_bytes()).to_bytes()


def test_request_round_trip() -> None:
    body = request(3, 9)
    parsed = AddCheckpoint.from_bytes(body)
    assert parsed.old_size == 3 and len(parsed.proof) > 0 and parsed.to_bytes() == body


def test_answer_from_another_key_is_not_a_cosignature(witness: FakeWitness) -> None:
    d = witness.add(request(0, 5))
    other = _key("audit-office/w2", ALG_COSIGNATURE_V1)
    with pytest.raises(SignatureError, match="without its cosignature"):
        verify_response(Checkpoint(ORIGIN, 5, TREE.root(5)), d.body, other.verifier)
    with pytest.raises(SignatureError):  # a cosignature over another checkpoint
        verify_response(Checkpoint(ORIGIN, 6, TREE.root(6)), d.body, WITNESS.verifier)


# --- witness quorums ---------------------------------------------------------------------

W = [_key(f"w{i}", ALG_COSIGNATURE_V1) for i in range(3)]


def _cosigned(size: int, by: list[SigningKey]) -> bytes:
    from ledger.cosignature import cosign

    n = Note.from_bytes(note(size))
    cp = Checkpoint.from_text(n.text)
    return n.with_signatures(cosign(cp, k, NOW) for k in by).to_bytes()


def test_k_of_n_witness_quorum() -> None:
    policy = WitnessPolicy.k_of([k.verifier for k in W], 2)
    assert not check_witnesses(_cosigned(5, W[:1]), policy).satisfied
    assert require_witnesses(_cosigned(5, W[:2]), policy) == ("w0", "w1")
    with pytest.raises(SignatureError, match="cosigned by w2"):
        require_witnesses(_cosigned(5, W[2:]), policy)
    assert not WitnessPolicy.k_of([], 0).required
    with pytest.raises(UsageError):
        WitnessPolicy.k_of([W[0].verifier], 2)


def test_tlog_policy_file_with_groups() -> None:
    text = (
        f"# two organisations\nlog {VALIDATORS[0].verifier.to_vkey()}\n"
        f"witness A1 {W[0].verifier.to_vkey()} https://a1.example/\n"
        f"witness A2 {W[1].verifier.to_vkey()}\n"
        f"\twitness B1   {W[2].verifier.to_vkey()}\n"
        "group A any A1 A2\ngroup AB all A B1\nquorum AB\n"
    )
    policy = parse_policy(text.encode())
    assert policy.urls == {"A1": "https://a1.example/"}
    assert not check_witnesses(_cosigned(5, W[:2]), policy).satisfied
    assert check_witnesses(_cosigned(5, [W[1], W[2]]), policy).satisfied
    assert not parse_policy(b"quorum none\n").required


@pytest.mark.parametrize(("text", "message"), [
    ("", "no quorum"),
    ("quorum X\n", "not defined"),
    ("quorum none\nquorum none\n", "exactly one"),
    (f"witness A {W[0].verifier.to_vkey()}\nwitness B {W[0].verifier.to_vkey()}\nquorum A\n",
     "duplicates"),
    (f"witness A {W[0].verifier.to_vkey()}\ngroup G 2 A\nquorum G\n", "between 1 and 1"),
    (f"witness A {W[0].verifier.to_vkey()}\ngroup G any A A\nquorum G\n", "twice"),
    (f"witness A {VALIDATORS[0].verifier.to_vkey()}\nquorum A\n", "0x04"),
    ("frobnicate\nquorum none\n", "unknown keyword"),
    ("quorum none\x01\n", "control"),
])
def test_bad_policy_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_policy(text.encode())


@given(st.binary(max_size=600) | st.builds(lambda b, i: request(0, 5)[:i] + b + request(0, 5)[i:],
                                           st.binary(max_size=8), st.integers(0, 400)))
@settings(max_examples=300, deadline=None)
def test_any_body_gets_an_answer_never_an_exception(body: bytes) -> None:
    """h11's invariant: untrusted input parses or is refused; nothing else escapes."""
    d = decide(body, TRUST, None, {}.get, WITNESS, NOW)
    assert d.status in (200, 400, 403, 404, 409, 422)
    assert (d.status == 200) == (d.accept is not None)

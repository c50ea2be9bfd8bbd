"""C2SP tlog-checkpoint text and validator-quorum finality (ledger.checkpoint)."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.checkpoint import (
    Checkpoint,
    check_checkpoint,
    checkpoint_note,
    checkpoint_signature,
    max_faulty,
    quorum_threshold,
    sign_checkpoint,
    verify_final,
)
from ledger.errors import FormatError, SignatureError, UsageError, VerificationError
from ledger.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey
from ledger.limits import Limits
from ledger.note import Note, NoteSignature

EM = "\u2014"

# c2sp.org/tlog-checkpoint example (its signing key is not published: parse only).
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_TEXT + f"\n{EM} example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
).encode()
SPEC_ROOT = bytes.fromhex("0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62")

ORIGIN = "ledger.example/agencies"
ROOT = hashlib.sha256(b"root").digest()
CHECKPOINT = Checkpoint(ORIGIN, 42, ROOT)


def _validators(n: int) -> list[SigningKey]:
    return [
        SigningKey(f"validator-{i}.example", hashlib.sha256(b"v%d" % i).digest()) for i in range(n)
    ]


VALIDATORS = _validators(4)
POLICY = [k.verifier for k in VALIDATORS]


def test_spec_example_parses_and_round_trips() -> None:
    cp = Checkpoint.from_text(SPEC_TEXT)
    assert cp == Checkpoint("example.com/behind-the-sofa", 20852163, SPEC_ROOT)
    assert cp.to_text() == SPEC_TEXT
    note = Note.from_bytes(SPEC_NOTE)
    assert Checkpoint.from_text(note.text) == cp
    assert note.to_bytes() == SPEC_NOTE


def test_spec_example_signature_from_an_unknown_key_does_not_count() -> None:
    with pytest.raises(SignatureError, match="0 of 4 signatures, need 3"):
        verify_final(SPEC_NOTE, POLICY, 3, origin="example.com/behind-the-sofa")


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (6, 5), (7, 5), (10, 7), (13, 9), (100, 67)],
)
def test_quorum_threshold_table(n: int, expected: int) -> None:
    assert quorum_threshold(n) == expected


def test_quorum_threshold_is_2f_plus_1_for_3f_plus_1_validators() -> None:
    for f in range(100):
        assert max_faulty(3 * f + 1) == f
        assert quorum_threshold(3 * f + 1) == 2 * f + 1


def test_quorums_intersect_in_an_honest_validator_and_stay_reachable() -> None:
    for n in range(1, 300):
        q, f = quorum_threshold(n), max_faulty(n)
        assert 2 * q - n >= f + 1  # safety: two quorums share more than f validators
        assert n - f >= q  # liveness: the honest validators alone form a quorum


def test_quorum_threshold_needs_validators() -> None:
    with pytest.raises(UsageError):
        quorum_threshold(0)


def test_final_with_a_quorum() -> None:
    data = sign_checkpoint(CHECKPOINT, VALIDATORS[:3])
    assert verify_final(data, POLICY, 3, origin=ORIGIN) == CHECKPOINT
    result = check_checkpoint(data, POLICY, 3, origin=ORIGIN)
    assert result.verified
    assert result.signed == tuple(POLICY[:3])
    assert result.unsigned == (POLICY[3],)
    assert result.describe() == "3 of 4 signatures, need 3"


def test_below_threshold_says_k_of_n_need_t() -> None:
    data = sign_checkpoint(CHECKPOINT, VALIDATORS[:2])
    with pytest.raises(SignatureError, match="2 of 4 signatures, need 3"):
        verify_final(data, POLICY, 3, origin=ORIGIN)
    result = check_checkpoint(data, POLICY, 3, origin=ORIGIN)
    assert not result.verified


def test_duplicate_signatures_of_one_validator_count_once() -> None:
    sig = checkpoint_signature(CHECKPOINT, VALIDATORS[0])
    data = checkpoint_note(CHECKPOINT, [sig, sig, sig, sig])
    with pytest.raises(SignatureError, match="1 of 4 signatures, need 3"):
        verify_final(data, POLICY, 3, origin=ORIGIN)


def test_validator_listed_twice_in_the_policy_counts_once() -> None:
    data = sign_checkpoint(CHECKPOINT, VALIDATORS[:1])
    with pytest.raises(UsageError, match="exceeds"):
        verify_final(data, [POLICY[0], POLICY[0]], 2, origin=ORIGIN)


def test_unknown_keys_are_ignored_and_do_not_count() -> None:
    outsiders = _validators(10)[4:]
    sigs = [checkpoint_signature(CHECKPOINT, k) for k in [*outsiders, *VALIDATORS[:2]]]
    data = checkpoint_note(CHECKPOINT, sigs)
    with pytest.raises(SignatureError, match="2 of 4 signatures, need 3"):
        verify_final(data, POLICY, 3, origin=ORIGIN)
    more = checkpoint_note(CHECKPOINT, [*sigs, checkpoint_signature(CHECKPOINT, VALIDATORS[3])])
    assert verify_final(more, POLICY, 3, origin=ORIGIN) == CHECKPOINT


def test_a_bad_signature_from_a_validator_rejects_even_with_a_quorum() -> None:
    sigs = [checkpoint_signature(CHECKPOINT, k) for k in VALIDATORS]
    forged = NoteSignature(sigs[3].name, sigs[3].key_id, bytes(64))
    data = checkpoint_note(CHECKPOINT, [*sigs[:3], forged])
    with pytest.raises(SignatureError, match=r"validator-3\.example"):
        verify_final(data, POLICY, 3, origin=ORIGIN)


def test_signature_over_another_checkpoint_is_rejected() -> None:
    other = Checkpoint(ORIGIN, 43, ROOT)
    sigs = [checkpoint_signature(other, k) for k in VALIDATORS]
    with pytest.raises(SignatureError):
        verify_final(checkpoint_note(CHECKPOINT, sigs), POLICY, 3, origin=ORIGIN)


POLICY_MISUSE = [
    ("empty validator set", [], 1),
    ("empty validator set, zero threshold", [], 0),
    ("zero threshold", POLICY, 0),
    ("negative threshold", POLICY, -1),
    ("threshold above n", POLICY, 5),
    (
        "cosigner key as validator",
        [SigningKey("w.example", bytes(32), ALG_COSIGNATURE_V1).verifier],
        1,
    ),
]


@pytest.mark.parametrize(
    ("case", "validators", "threshold"), POLICY_MISUSE, ids=[c for c, _, _ in POLICY_MISUSE]
)
def test_policy_misuse_fails_closed(
    case: str, validators: list[VerifierKey], threshold: int
) -> None:
    data = sign_checkpoint(CHECKPOINT, VALIDATORS)
    with pytest.raises(UsageError):
        verify_final(data, validators, threshold, origin=ORIGIN)
    with pytest.raises(UsageError):
        check_checkpoint(data, validators, threshold, origin=ORIGIN)


def test_wrong_origin_is_rejected() -> None:
    data = sign_checkpoint(CHECKPOINT, VALIDATORS)
    with pytest.raises(VerificationError, match="origin"):
        verify_final(data, POLICY, 3, origin="ledger.example/other")


def test_extension_lines_are_rejected_even_when_signed() -> None:
    from ledger.note import sign

    data = sign(CHECKPOINT.to_text() + "extension\n", VALIDATORS)
    with pytest.raises(FormatError, match="extension"):
        verify_final(data, POLICY, 3, origin=ORIGIN)


_B64_ROOT = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="

TEXT_REJECTIONS = [
    ("empty", ""),
    ("no final newline", f"o\n1\n{_B64_ROOT}"),
    ("two lines", "o\n1\n"),
    ("extension line", f"o\n1\n{_B64_ROOT}\next\n"),
    ("empty extension line", f"o\n1\n{_B64_ROOT}\n\n"),
    ("empty origin", f"\n1\n{_B64_ROOT}\n"),
    ("control in origin", f"o\x01\n1\n{_B64_ROOT}\n"),
    ("origin over max_name_bytes", f"{'o' * 256}\n1\n{_B64_ROOT}\n"),
    ("leading zero", f"o\n01\n{_B64_ROOT}\n"),
    ("double zero", f"o\n00\n{_B64_ROOT}\n"),
    ("plus sign", f"o\n+1\n{_B64_ROOT}\n"),
    ("minus sign", f"o\n-1\n{_B64_ROOT}\n"),
    ("leading space", f"o\n 1\n{_B64_ROOT}\n"),
    ("trailing space", f"o\n1 \n{_B64_ROOT}\n"),
    ("underscore", f"o\n1_000\n{_B64_ROOT}\n"),
    ("exponent", f"o\n1e3\n{_B64_ROOT}\n"),
    ("hex", f"o\n0x10\n{_B64_ROOT}\n"),
    ("arabic-indic digits", f"o\n\u0661\u0662\n{_B64_ROOT}\n"),
    ("empty size", f"o\n\n{_B64_ROOT}\n"),
    ("size 2^64", f"o\n{2**64}\n{_B64_ROOT}\n"),
    ("size with 21 digits", f"o\n{10**20}\n{_B64_ROOT}\n"),
    ("root of 31 bytes", "o\n1\n" + "A" * 42 + "==\n"),
    ("root of 33 bytes", "o\n1\n" + "A" * 44 + "\n"),
    ("root not canonical", "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n"),
    ("root unpadded", "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n"),
    ("root url-safe alphabet", "o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n"),
    ("CRLF", f"o\r\n1\r\n{_B64_ROOT}\r\n"),
    ("huge", "o" * 100_000 + f"\n1\n{_B64_ROOT}\n"),
]


@pytest.mark.parametrize(("case", "text"), TEXT_REJECTIONS, ids=[c for c, _ in TEXT_REJECTIONS])
def test_text_rejections(case: str, text: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_text(text)


def test_size_bounds() -> None:
    assert Checkpoint.from_text(f"o\n0\n{_B64_ROOT}\n").size == 0
    assert Checkpoint.from_text(f"o\n{2**64 - 1}\n{_B64_ROOT}\n").size == 2**64 - 1


def test_origin_may_contain_spaces_and_plus() -> None:
    # tlog-checkpoint: clients MUST NOT assume the origin follows the URL recommendation.
    cp = Checkpoint.from_text(f"my log + more\n1\n{_B64_ROOT}\n")
    assert cp.origin == "my log + more"


def test_origin_bound_follows_limits() -> None:
    text = f"{'o' * 10}\n1\n{_B64_ROOT}\n"
    Checkpoint.from_text(text, Limits(max_name_bytes=10))
    with pytest.raises(FormatError):
        Checkpoint.from_text(text, Limits(max_name_bytes=9))


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("", 1, ROOT),
        ("a\nb", 1, ROOT),
        ("\ud800", 1, ROOT),
        ("o", -1, ROOT),
        ("o", 2**64, ROOT),
        ("o", 1, ROOT[:31]),
    ],
)
def test_constructor_misuse(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(UsageError):
        Checkpoint(origin, size, root)


_ORIGIN = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@given(
    origin=_ORIGIN,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_text_round_trip(origin: str, size: int, root: bytes) -> None:
    cp = Checkpoint(origin, size, root)
    text = cp.to_text()
    assert Checkpoint.from_text(text) == cp
    assert Checkpoint.from_text(text).to_text() == text


@given(st.text(max_size=200))
def test_from_text_only_raises_format_error(text: str) -> None:
    with contextlib.suppress(FormatError):
        Checkpoint.from_text(text)

"""C2SP signed-note parsing, serialization, signing and verification (ledger.note)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import FormatError, SignatureError, UsageError
from ledger.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey
from ledger.limits import Limits
from ledger.note import (
    Note,
    NoteSignature,
    open_note,
    sign,
    signature_for,
    verify_note,
)

EM = "\u2014"

# c2sp.org/signed-note, example (verifier key and signed note).
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_TEXT = "This is an example message.\n"
SPEC_SIG_LINE = (
    f"{EM} example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
SPEC_NOTE = (SPEC_TEXT + "\n" + SPEC_SIG_LINE).encode()

# c2sp.org/signed-note, opening example (no public key given: parse only).
POEM_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n\ned \u00e8 subito sera.\n"
    f"\n{EM} quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
).encode()

# golang.org/x/mod/sumdb/note documentation: keys, text and the (doubly) signed note.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    f"{EM} PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    f"{EM} EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)


def _key(i: int) -> SigningKey:
    return SigningKey(f"node-{i}.example", hashlib.sha256(bytes([i])).digest())


def test_spec_example_verifies() -> None:
    key = VerifierKey.from_vkey(SPEC_VKEY)
    result = open_note(SPEC_NOTE, [key])
    assert result.note.text == SPEC_TEXT
    assert result.verified == (key,)
    assert result.key_hashes == frozenset({key.key_hash})
    assert result.unknown == 0
    assert result.note.to_bytes() == SPEC_NOTE


def test_spec_example_flipped_bits_fail() -> None:
    key = VerifierKey.from_vkey(SPEC_VKEY)
    note = Note.from_bytes(SPEC_NOTE)
    sig = note.signatures[0]
    for i in range(len(sig.signature) * 8):
        flipped = bytearray(sig.signature)
        flipped[i // 8] ^= 1 << (i % 8)
        bad = Note(note.text, (NoteSignature(sig.name, sig.key_id, bytes(flipped)),))
        with pytest.raises(SignatureError):
            open_note(bad.to_bytes(), [key])
    tampered = SPEC_NOTE.replace(b"example message", b"examplE message")
    with pytest.raises(SignatureError, match=r"example\.com/foo"):
        open_note(tampered, [key])


def test_spec_example_with_unknown_keys_ignored() -> None:
    key = VerifierKey.from_vkey(SPEC_VKEY)
    sig = Note.from_bytes(SPEC_NOTE).signatures[0]
    strangers = (
        NoteSignature("other.example/key", sig.key_id, b"\x01" * 64),  # same ID, other name
        NoteSignature("example.com/foo", b"\x00\x00\x00\x00", b"\x02" * 64),  # same name, other ID
        NoteSignature("unknown.example", b"\x12\x34\x56\x78", b"\x03" * 7),
    )
    data = Note(SPEC_TEXT, (*strangers, sig)).to_bytes()
    result = open_note(data, [key])
    assert result.verified == (key,)
    assert result.unknown == 3


def test_note_without_a_known_signer_is_rejected() -> None:
    with pytest.raises(SignatureError, match="no valid signature"):
        open_note(SPEC_NOTE, [_key(1).verifier])
    with pytest.raises(SignatureError):
        open_note(SPEC_NOTE, [])
    result = verify_note(Note.from_bytes(SPEC_NOTE), [])
    assert not result.ok
    assert result.unknown == 1


def test_spec_poem_parses_and_round_trips() -> None:
    note = Note.from_bytes(POEM_NOTE)
    assert note.text.endswith("\n\ned \u00e8 subito sera.\n")
    assert note.signatures[0].name == "quasimodo.example/salvatore"
    assert note.to_bytes() == POEM_NOTE


def test_go_signing_vector_is_byte_exact() -> None:
    signer = SigningKey.from_skey(PETER_SKEY)
    assert sign(GO_TEXT, [signer]) == (GO_TEXT + "\n" + PETER_SIG).encode()


def test_go_doubly_signed_note() -> None:
    data = (GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    peter, enoch = VerifierKey.from_vkey(PETER_VKEY), VerifierKey.from_vkey(ENOCH_VKEY)
    both = open_note(data, [peter, enoch])
    assert both.verified == (peter, enoch)
    only_peter = open_note(data, [peter])
    assert only_peter.verified == (peter,)
    assert only_peter.unknown == 1


def test_repeated_identical_lines_from_a_known_key_count_once() -> None:
    peter = VerifierKey.from_vkey(PETER_VKEY)
    data = (GO_TEXT + "\n" + PETER_SIG * 5).encode()
    assert open_note(data, [peter]).verified == (peter,)


def test_a_second_bad_signature_from_a_known_key_rejects_the_note() -> None:
    # signed-note: every signature matching a known key MUST be verified.
    peter = VerifierKey.from_vkey(PETER_VKEY)
    good = Note.from_bytes((GO_TEXT + "\n" + PETER_SIG).encode()).signatures[0]
    bad = NoteSignature(good.name, good.key_id, bytes(64))
    with pytest.raises(SignatureError):
        verify_note(Note(GO_TEXT, (good, bad)), [peter])


def _colliding_keys() -> tuple[VerifierKey, VerifierKey]:
    """Two different public keys with one name and one 4-byte key ID (a birthday search)."""
    seen: dict[bytes, bytes] = {}
    for i in itertools.count():
        pk = i.to_bytes(32, "little")
        kid = hashlib.sha256(b"dup.example\n\x01" + pk).digest()[:4]
        if kid in seen:
            return VerifierKey("dup.example", seen[kid]), VerifierKey("dup.example", pk)
        seen[kid] = pk
    raise AssertionError  # pragma: no cover


def test_ambiguous_trust_policy_is_a_usage_error() -> None:
    a, b = _colliding_keys()
    assert a.key_id == b.key_id and a != b
    with pytest.raises(UsageError, match="share name and key ID"):
        verify_note(Note.from_bytes(SPEC_NOTE), [a, b])
    # The same key listed twice is not ambiguous.
    key = VerifierKey.from_vkey(SPEC_VKEY)
    assert open_note(SPEC_NOTE, [key, key]).verified == (key,)


def test_cosigner_keys_are_not_note_keys() -> None:
    witness = SigningKey("w.example", bytes(32), ALG_COSIGNATURE_V1)
    with pytest.raises(UsageError):
        verify_note(Note.from_bytes(SPEC_NOTE), [witness.verifier])
    with pytest.raises(UsageError):
        signature_for("text\n", witness)


def test_sign_and_open_many_keys() -> None:
    keys = [_key(i) for i in range(5)]
    data = sign("hello\n\nworld\n", [*keys, keys[0]])
    note = Note.from_bytes(data)
    assert len(note.signatures) == 5
    result = open_note(data, [k.verifier for k in keys])
    assert result.verified == tuple(k.verifier for k in keys)


def test_with_signatures_appends_only_new_lines() -> None:
    text = "merge\n"
    a, b, c = (signature_for(text, _key(i)) for i in range(3))
    note = Note(text, (a,)).with_signatures([a, b]).with_signatures([c, b])
    assert note.signatures == (a, b, c)


@pytest.mark.parametrize(
    "text", ["no newline", "", "tab\there\n", "cr\r\n", "nul\x00\n", "lone \ud800 surrogate\n"]
)
def test_sign_refuses_invalid_text(text: str) -> None:
    with pytest.raises(UsageError):
        sign(text, [_key(1)])


def test_note_needs_a_signature() -> None:
    with pytest.raises(UsageError):
        Note("x\n", ())
    with pytest.raises(UsageError):
        sign("x\n", [])


_SIG = PETER_SIG.encode()
_TEXT = GO_TEXT.encode()
_RAW_SIG = base64.b64decode(PETER_SIG.split()[-1])

NOTE_REJECTIONS = [
    ("text only", _TEXT),
    ("blank line but no signatures", _TEXT + b"\n"),
    ("signature without final newline", _TEXT + b"\n" + _SIG[:-1]),
    ("control character", b"\x01" + _TEXT + b"\n" + _SIG),
    ("carriage return", _TEXT.replace(b"\n", b"\r\n", 1) + b"\n" + _SIG),
    ("tab", b"\t" + _TEXT + b"\n" + _SIG),
    ("invalid UTF-8", b"\xff" + _TEXT + b"\n" + _SIG),
    ("overlong UTF-8", b"\xc0\xaf" + _TEXT + b"\n" + _SIG),
    ("UTF-8 surrogate", b"\xed\xa0\x80" + _TEXT + b"\n" + _SIG),
    ("space in key name", _TEXT + b"\n" + _SIG.replace(b"PeterNeumann", b"Peter Neumann")),
    ("plus in key name", _TEXT + b"\n" + _SIG.replace(b"PeterNeumann", b"Peter+Neumann")),
    ("empty key name", _TEXT + b"\n" + _SIG.replace(b"PeterNeumann", b"")),
    ("unexpected line after signatures", _TEXT + b"\n" + _SIG + b"Unexpected line.\n"),
    ("hyphens instead of em dash", _TEXT + b"\n" + _SIG.replace(EM.encode(), b"--")),
    ("en dash instead of em dash", _TEXT + b"\n" + _SIG.replace(EM.encode(), "\u2013".encode())),
    ("no space after dash", _TEXT + b"\n" + _SIG.replace(EM.encode() + b" ", EM.encode())),
    ("no signature after name", f"{GO_TEXT}\n{EM} PeterNeumann\n".encode()),
    ("empty signature", f"{GO_TEXT}\n{EM} PeterNeumann \n".encode()),
    ("key ID only", f"{GO_TEXT}\n{EM} PeterNeumann AAAAAA==\n".encode()),
    ("non-canonical base64", f"{GO_TEXT}\n{EM} PeterNeumann AAAAAAB=\n".encode()),
    ("unpadded base64", f"{GO_TEXT}\n{EM} PeterNeumann AAAAAAA\n".encode()),
    ("two spaces", _TEXT + b"\n" + _SIG.replace(b"PeterNeumann ", b"PeterNeumann  ")),
    ("trailing blank line", _TEXT + b"\n" + _SIG + b"\n"),
    ("empty input", b""),
]


@pytest.mark.parametrize(("case", "data"), NOTE_REJECTIONS, ids=[c for c, _ in NOTE_REJECTIONS])
def test_note_rejections(case: str, data: bytes) -> None:
    with pytest.raises(FormatError):
        Note.from_bytes(data)


def test_the_last_empty_line_separates_text_from_signatures() -> None:
    # signed-note "Format": a signature-like line before the last blank line is text.
    data = _TEXT + b"\n" + _SIG + b"\n" + _SIG
    note = Note.from_bytes(data)
    assert note.text == (_TEXT + b"\n" + _SIG).decode()
    assert len(note.signatures) == 1
    assert note.to_bytes() == data
    with pytest.raises(SignatureError):
        open_note(data, [VerifierKey.from_vkey(PETER_VKEY)])


def test_del_and_c1_characters_are_not_ascii_controls() -> None:
    # signed-note forbids only characters below U+0020 (other than newline).
    data = ("del \x7f and nel \x85\n\n").encode() + _SIG
    assert Note.from_bytes(data).to_bytes() == data


def test_signature_count_is_bounded_before_verification() -> None:
    limits = Limits(max_note_signatures=3)
    peter = VerifierKey.from_vkey(PETER_VKEY)
    assert open_note(_TEXT + b"\n" + _SIG * 3, [peter], limits).ok
    with pytest.raises(FormatError, match="limit 3"):
        open_note(_TEXT + b"\n" + _SIG * 4, [peter], limits)


def test_size_is_bounded_before_parsing() -> None:
    data = _TEXT + b"\n" + _SIG
    Note.from_bytes(data, Limits(max_note_bytes=len(data)))
    with pytest.raises(FormatError, match="limit"):
        Note.from_bytes(data, Limits(max_note_bytes=len(data) - 1))


def test_name_bound_is_an_input_bound_only() -> None:
    long_name = "n" * 300
    data = Note(GO_TEXT, (NoteSignature(long_name, b"\0" * 4, b"\1"),)).to_bytes()
    with pytest.raises(FormatError):
        Note.from_bytes(data)
    assert Note.from_bytes(data, Limits(max_name_bytes=300)).signatures[0].name == long_name


def test_signed_note_must_accept_sixteen_signatures() -> None:
    # signed-note: verifiers MUST accept at least up to 16 signatures.
    keys = [_key(i) for i in range(16)]
    data = sign("sixteen\n", keys)
    assert len(open_note(data, [k.verifier for k in keys]).verified) == 16


_LINE = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\n"), max_size=30
)
_NAME = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="+"),
    min_size=1,
    max_size=20,
)
_SIGNATURE = st.builds(
    NoteSignature, _NAME, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80)
)


@given(lines=st.lists(_LINE, min_size=1, max_size=6), sigs=st.lists(_SIGNATURE, min_size=1))
def test_round_trip_is_byte_exact(lines: list[str], sigs: list[NoteSignature]) -> None:
    note = Note("\n".join(lines) + "\n", tuple(sigs))
    data = note.to_bytes()
    parsed = Note.from_bytes(data)
    assert parsed == note
    assert parsed.to_bytes() == data


@given(st.binary(max_size=300))
def test_parser_only_raises_format_error_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        Note.from_bytes(data)


@given(st.data())
def test_parser_only_raises_format_error_on_mutations(data: st.DataObject) -> None:
    base = bytearray(_TEXT + b"\n" + _SIG + ENOCH_SIG.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.integers(0, 255))
    try:
        parsed = Note.from_bytes(bytes(base))
    except FormatError:
        return
    assert parsed.to_bytes() == bytes(base)

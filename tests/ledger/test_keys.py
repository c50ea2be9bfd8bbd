"""Ed25519 verifier and signer keys in the signed-note encodings (ledger.keys)."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import FormatError, UsageError
from ledger.keys import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    SigningKey,
    VerifierKey,
    check_key_name,
    decode_base64,
)
from ledger.limits import Limits

# c2sp.org/signed-note example verifier key.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
# golang.org/x/mod/sumdb/note documentation and tests.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
# The Go checksum database key: its base64 part contains '+'.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"


@pytest.mark.parametrize("vkey", [SPEC_VKEY, PETER_VKEY, ENOCH_VKEY, SUMDB_VKEY])
def test_published_vkeys_round_trip(vkey: str) -> None:
    key = VerifierKey.from_vkey(vkey)
    assert key.alg == ALG_ED25519
    assert key.to_vkey() == vkey
    assert key.key_id.hex() == vkey.split("+")[1]


def test_spec_vkey_fields() -> None:
    key = VerifierKey.from_vkey(SPEC_VKEY)
    assert key.name == "example.com/foo"
    assert key.key_id == bytes.fromhex("530d903a")
    expected = hashlib.sha256(b"example.com/foo\n\x01" + key.public_key).digest()
    assert key.key_hash == expected
    assert key.key_id == expected[:4]


def test_go_signer_key_derives_go_verifier_key() -> None:
    signer = SigningKey.from_skey(PETER_SKEY)
    assert signer.verifier.to_vkey() == PETER_VKEY
    assert signer.to_skey() == PETER_SKEY
    assert "seed" not in repr(signer)
    assert signer.seed.hex() not in repr(signer)


def test_cosignature_type_changes_the_key_id() -> None:
    seed = bytes(range(32))
    note_key = SigningKey("witness.example/w1", seed, ALG_ED25519)
    cosig_key = SigningKey("witness.example/w1", seed, ALG_COSIGNATURE_V1)
    assert note_key.verifier.public_key == cosig_key.verifier.public_key
    assert note_key.key_id != cosig_key.key_id
    pk = cosig_key.verifier.public_key
    assert cosig_key.key_id == hashlib.sha256(b"witness.example/w1\n\x04" + pk).digest()[:4]
    vkey = cosig_key.verifier.to_vkey()
    assert VerifierKey.from_vkey(vkey) == cosig_key.verifier
    assert SigningKey.from_skey(cosig_key.to_skey()) == cosig_key


def test_every_mangling_of_a_vkey_is_refused() -> None:
    # Same idea as the x/mod/sumdb/note tests: every proper substring and every
    # single-character increment must fail to parse.
    text = PETER_VKEY
    for i in range(len(text) + 1):
        for j in range(i + 1, len(text) + 1):
            if (i, j) != (0, len(text)):
                with pytest.raises(FormatError):
                    VerifierKey.from_vkey(text[i:j])
    for i in range(len(text)):
        mangled = text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :]
        with pytest.raises(FormatError):
            VerifierKey.from_vkey(mangled)


def test_every_mangling_of_an_skey_is_refused() -> None:
    text = PETER_SKEY
    for i in range(len(text)):
        mangled = text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :]
        with pytest.raises(FormatError):
            SigningKey.from_skey(mangled)
    for j in range(len(text)):
        with pytest.raises(FormatError):
            SigningKey.from_skey(text[:j])


def _with_id(name: str, alg: int, key: bytes) -> str:
    """A vkey whose key ID is correct for (name, alg, key), so only the tested flaw remains."""
    import base64

    kid = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + key).digest()[:4].hex()
    return f"{name}+{kid}+{base64.b64encode(bytes([alg]) + key).decode()}"


_PK = VerifierKey.from_vkey(PETER_VKEY).public_key

VKEY_REJECTIONS = [
    ("empty", ""),
    ("no separators", "PeterNeumann"),
    ("one separator", "PeterNeumann+c74f20a3"),
    ("empty name", _with_id("", 1, _PK)),
    ("space in name", _with_id("Peter Neumann", 1, _PK)),
    ("tab in name", _with_id("Peter\tNeumann", 1, _PK)),
    ("no-break space in name", _with_id("Peter\u00a0Neumann", 1, _PK)),
    ("em space in name", _with_id("Peter\u2003Neumann", 1, _PK)),
    ("line separator in name", _with_id("Peter\u2028Neumann", 1, _PK)),
    ("control in name", _with_id("Peter\x01Neumann", 1, _PK)),
    ("name over max_name_bytes", _with_id("a" * 256, 1, _PK)),
    ("uppercase hex id", PETER_VKEY.replace("c74f20a3", "C74F20A3")),
    ("short hex id", PETER_VKEY.replace("c74f20a3", "c74f20a")),
    ("signed hex id", PETER_VKEY.replace("c74f20a3", "+74f20a3")),
    ("wrong key id", PETER_VKEY.replace("c74f20a3", "c74f20a4")),
    ("base64 without padding", _with_id("x", 1, _PK)[:-1]),
    ("base64 with stray bits", PETER_VKEY[:-1] + "X"),
    ("base64 with whitespace", PETER_VKEY[:-4] + " " + PETER_VKEY[-3:]),
    ("short key with adjusted id", _with_id("PeterNeumann", 1, _PK[:31])),
    ("long key with adjusted id", _with_id("PeterNeumann", 1, _PK + b"\0")),
    ("unknown type 0x02 with adjusted id", _with_id("PeterNeumann", 2, _PK)),
    ("unknown type 0x65 with adjusted id", _with_id("PeterNeumann", 0x65, _PK)),
    ("huge input", "a" * 100_000),
]


@pytest.mark.parametrize(("case", "text"), VKEY_REJECTIONS, ids=[c for c, _ in VKEY_REJECTIONS])
def test_vkey_rejections(case: str, text: str) -> None:
    with pytest.raises(FormatError):
        VerifierKey.from_vkey(text)


def test_name_bound_follows_limits() -> None:
    vkey = _with_id("n" * 20, 1, _PK)
    VerifierKey.from_vkey(vkey)
    with pytest.raises(FormatError):
        VerifierKey.from_vkey(vkey, Limits(max_name_bytes=19))


def test_unicode_names_are_fine() -> None:
    check_key_name("Ognuno/sta-solo\u00e8")
    key = SigningKey("\u65e5\u672c.example/log", bytes(32))
    assert VerifierKey.from_vkey(key.verifier.to_vkey()) == key.verifier


def test_constructor_misuse_is_usage_error() -> None:
    with pytest.raises(UsageError):
        VerifierKey("a b", _PK)
    with pytest.raises(UsageError):
        VerifierKey("ok", _PK[:31])
    with pytest.raises(UsageError):
        VerifierKey("ok", _PK, alg=0x02)
    with pytest.raises(UsageError):
        SigningKey("ok", b"short")
    with pytest.raises(UsageError):
        SigningKey.generate("ok", lambda n: b"\0" * (n - 1))


def test_verify_never_raises_on_bad_signatures() -> None:
    signer = SigningKey.generate("node-1.example", lambda n: bytes(range(n)))
    key = signer.verifier
    sig = signer.sign(b"message")
    assert key.verify(b"message", sig)
    assert not key.verify(b"messagE", sig)
    for i in range(len(sig)):
        flipped = sig[:i] + bytes([sig[i] ^ 0x01]) + sig[i + 1 :]
        assert not key.verify(b"message", flipped)
    for bad in (b"", sig[:63], sig + b"\0", b"\xff" * 64, b"\0" * 64):
        assert not key.verify(b"message", bad)


def test_signatures_match_an_independent_implementation() -> None:
    seed = hashlib.sha256(b"seed").digest()
    ours = SigningKey("x.example", seed)
    theirs = Ed25519PrivateKey.from_private_bytes(seed)
    for message in (b"", b"a", b"x" * 1000):
        assert ours.sign(message) == theirs.sign(message)  # RFC 8032 is deterministic
        theirs.public_key().verify(ours.sign(message), message)


def test_generate_uses_only_the_given_randomness() -> None:
    calls: list[int] = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return b"\x07" * n

    key = SigningKey.generate("gen.example", rng)
    assert calls == [32]
    assert key == SigningKey("gen.example", b"\x07" * 32)


_NAME_CHARS = st.characters(
    blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="+\x85"
)


@given(
    name=st.text(_NAME_CHARS, min_size=1, max_size=40),
    seed=st.binary(min_size=32, max_size=32),
    alg=st.sampled_from([ALG_ED25519, ALG_COSIGNATURE_V1]),
)
def test_key_text_round_trips(name: str, seed: bytes, alg: int) -> None:
    signer = SigningKey(name, seed, alg)
    assert SigningKey.from_skey(signer.to_skey()) == signer
    vkey = signer.verifier.to_vkey()
    assert VerifierKey.from_vkey(vkey) == signer.verifier
    assert VerifierKey.from_vkey(vkey).to_vkey() == vkey


@given(st.text(max_size=120))
def test_vkey_parser_only_raises_format_error(text: str) -> None:
    with contextlib.suppress(FormatError):
        VerifierKey.from_vkey(text)


def test_decode_base64_is_strict() -> None:
    assert decode_base64("AA==", "x") == b"\0"
    for bad in ("AB==", "AA", "AA=", "A===", "AA==\n", "AA==AA==", "-_8=", "AA ==", "\u00e9A=="):
        with pytest.raises(FormatError):
            decode_base64(bad, "x")

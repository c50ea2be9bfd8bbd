"""ledger/ed25519.py: libsodium through ctypes (GIL kept) gives PyNaCl's verdicts exactly."""

from __future__ import annotations

import nacl.exceptions
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import ed25519

# RFC 8032 section 7.1, TEST 1 (empty message).
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b"
    "46bd25bf5f0595bbe24655141438e7a100b")


def test_the_gil_keeping_calls_are_in_use_here() -> None:
    assert ed25519.HOLDS_GIL  # PyNaCl's wheel exports libsodium's symbols


@pytest.mark.parametrize("gil", [True, False], ids=["ctypes", "pynacl-fallback"])
def test_rfc8032_vector_and_refusals(gil: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not gil:
        monkeypatch.setattr(ed25519, "_FUNCTIONS", None)
    public, secret = ed25519.secret_key(SEED)
    assert public == PUBLIC
    assert ed25519.sign(secret, b"") == SIGNATURE
    assert ed25519.verify(PUBLIC, b"", SIGNATURE)
    assert not ed25519.verify(PUBLIC, b"x", SIGNATURE)
    assert not ed25519.verify(PUBLIC, b"", SIGNATURE[:-1] + bytes([SIGNATURE[-1] ^ 1]))
    # Sizes the C call would read past are refused before it.
    assert not ed25519.verify(PUBLIC[:31], b"", SIGNATURE)
    assert not ed25519.verify(PUBLIC, b"", SIGNATURE[:63])
    assert not ed25519.verify(PUBLIC, b"", SIGNATURE + b"\x00")
    with pytest.raises(ValueError, match="64 bytes"):
        ed25519.sign(secret[:32], b"")


def _nacl_verdict(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300),
       flip=st.integers(min_value=-1, max_value=8 * (32 + 64) - 1),
       memoryviews=st.booleans())
def test_same_signatures_and_verdicts_as_pynacl(seed: bytes, message: bytes, flip: int,
                                               memoryviews: bool) -> None:
    key = nacl.signing.SigningKey(seed)
    public, secret = ed25519.secret_key(seed)
    signature = ed25519.sign(secret, message)
    assert signature == key.sign(message).signature and public == bytes(key.verify_key)
    material = bytearray(public + signature)
    if flip >= 0:  # one bit of the key or of the signature flipped (or none)
        material[flip // 8] ^= 1 << (flip % 8)
    public, signature = bytes(material[:32]), bytes(material[32:])
    args = (memoryview(public), memoryview(message), memoryview(signature)) if memoryviews \
        else (public, message, signature)
    assert ed25519.verify(*args) == _nacl_verdict(public, message, signature)
    assert ed25519.verify(*args) == (flip < 0)


def test_gil_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from bench import bench_gil

    bench_gil.run(quick=True)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["bench"] for r in rows] == ["gil.verify.pynacl", "gil.verify.ledger_ed25519",
                                         "gil.sign.pynacl", "gil.sign.ledger_ed25519"]
    assert all(r["alone_per_s"] > 0 and r["beside_busy_thread_per_s"] > 0 for r in rows)
    assert [r["holds_gil"] for r in rows] == [False, True, False, True]

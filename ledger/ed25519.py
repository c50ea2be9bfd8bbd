"""Ed25519 verify and sign that keep Python's GIL: libsodium's, called through ``ctypes.PyDLL``.

Why not PyNaCl's own calls: they go through cffi, which releases the GIL around every C
call. In a node, other threads always want the GIL (gRPC handlers parsing messages, the
consensus thread), and CPython hands it back to a thread that released it only when the
current holder gives it up, after the switch interval (5 ms) at worst. So each 60 us
signature check cost up to 5 ms of wall time under load: a gossip batch of 25 records took
a second to admit, votes waited behind it, and the network slowed to a crawl. Measured
(``python -m bench --only gil``): PyNaCl verifies 10,600/s alone and 190/s beside one busy
thread; these calls 15,300/s alone and 6,400/s beside it (the GIL shared fairly).

A 60 us call holding the GIL is far below the switch interval, so no other thread waits
noticeably for it. The functions are libsodium's, from the copy PyNaCl loads (same
accept/reject rules everywhere: ``crypto_sign_open``, which PyNaCl's ``verify`` uses, is
this same check). If that copy does not export them (a PyNaCl built differently), PyNaCl's
calls are used instead: slower under contention, same results.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import nacl.bindings  # its import runs sodium_init(), which the ctypes calls rely on too
import nacl.exceptions

PUBLIC_KEY_SIZE = 32
SECRET_KEY_SIZE = 64
SIGNATURE_SIZE = 64


def _pydll_functions() -> tuple[Callable[..., int], Callable[..., int]] | None:
    """libsodium's detached verify and sign from PyNaCl's copy, GIL kept; None if absent."""
    try:
        import nacl._sodium

        library = ctypes.PyDLL(nacl._sodium.__file__)
        verify = library.crypto_sign_ed25519_verify_detached
        sign = library.crypto_sign_ed25519_detached
    except (OSError, AttributeError, ImportError):
        return None
    verify.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p)
    verify.restype = ctypes.c_int
    sign.argtypes = (ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulonglong,
                     ctypes.c_char_p)
    sign.restype = ctypes.c_int
    return verify, sign


_FUNCTIONS = _pydll_functions()
HOLDS_GIL = _FUNCTIONS is not None
"""True when the GIL-keeping libsodium calls are in use (else PyNaCl's)."""


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``
    (libsodium's rules: canonical S, small-order keys and R refused)."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False  # checked here: the C call reads exactly these sizes
    if _FUNCTIONS is None:
        return _nacl_verify(public_key, message, signature)
    return _FUNCTIONS[0](bytes(signature), bytes(message), len(message),
                         bytes(public_key)) == 0


def sign(secret_key: bytes, message: bytes) -> bytes:
    """The 64-byte signature of ``message`` by libsodium's 64-byte ``secret_key``
    (seed || public key, as ``nacl.bindings.crypto_sign_seed_keypair`` returns it)."""
    if len(secret_key) != SECRET_KEY_SIZE:
        raise ValueError(f"an Ed25519 secret key is {SECRET_KEY_SIZE} bytes")
    if _FUNCTIONS is None:
        return bytes(nacl.bindings.crypto_sign(message, secret_key)[:SIGNATURE_SIZE])
    out = ctypes.create_string_buffer(SIGNATURE_SIZE)
    if _FUNCTIONS[1](out, None, bytes(message), len(message), bytes(secret_key)) != 0:
        raise ValueError("libsodium refused to sign")
    return out.raw


def secret_key(seed: bytes) -> tuple[bytes, bytes]:
    """(public key, 64-byte secret key) of a 32-byte RFC 8032 seed."""
    public, secret = nacl.bindings.crypto_sign_seed_keypair(bytes(seed))
    return bytes(public), bytes(secret)


def _nacl_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True

"""C2SP tlog-proof@v1 files (ledger.tlogproof): byte-exact parsing and serialization."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import FormatError, UsageError
from ledger.keys import SigningKey
from ledger.limits import Limits
from ledger.tlogproof import TlogProof

KEY = SigningKey("example.com/fancylog", hashlib.sha256(b"fancylog").digest())

# c2sp.org/tlog-proof example: everything but the (elided) signature lines is verbatim.
SPEC_HEAD = (
    b"c2sp.org/tlog-proof@v1\n"
    b"extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n"
    b"index 73894\n"
    b"gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
    b"B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
    b"EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
    b"RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
    b"AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
    b"\n"
)
SPEC_CHECKPOINT = Checkpoint(
    "example.com/fancylog",
    109482,
    base64.b64decode("sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08="),
)
SPEC_NOTE = sign_checkpoint(SPEC_CHECKPOINT, [KEY])
SPEC_PROOF = SPEC_HEAD + SPEC_NOTE

CHECKPOINT = Checkpoint("ledger.example/agencies", 10, hashlib.sha256(b"root").digest())
NOTE = sign_checkpoint(CHECKPOINT, [KEY])
HASHES = tuple(hashlib.sha256(bytes([i])).digest() for i in range(4))


def test_spec_example_parses_and_round_trips() -> None:
    assert SPEC_NOTE.startswith(b"example.com/fancylog\n109482\nsFodV/vSp5O8")
    proof = TlogProof.from_bytes(SPEC_PROOF)
    assert proof.index == 73894
    assert len(proof.hashes) == 5
    assert proof.hashes[0] == base64.b64decode("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=")
    assert proof.extra is not None and proof.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert proof.checkpoint_note == SPEC_NOTE
    assert proof.to_bytes() == SPEC_PROOF


def test_without_extra_and_without_hashes() -> None:
    proof = TlogProof(0, (), NOTE)
    data = proof.to_bytes()
    assert data == b"c2sp.org/tlog-proof@v1\nindex 0\n\n" + NOTE
    assert TlogProof.from_bytes(data) == proof


def test_with_everything() -> None:
    proof = TlogProof(9, HASHES, NOTE, extra=b"\x00vrf proof\xff")
    assert TlogProof.from_bytes(proof.to_bytes()) == proof


TWO_HASH_LINES = b"".join(base64.b64encode(h) + b"\n" for h in HASHES[:2])


def _proof(
    header: bytes = b"c2sp.org/tlog-proof@v1\n",
    extra: bytes = b"",
    index: bytes = b"index 3\n",
    hashes: bytes = TWO_HASH_LINES,
    blank: bytes = b"\n",
    note: bytes = NOTE,
) -> bytes:
    return header + extra + index + hashes + blank + note


_H = base64.b64encode(HASHES[0])

PROOF_REJECTIONS = [
    ("empty", b""),
    ("header only", b"c2sp.org/tlog-proof@v1\n"),
    ("wrong header", _proof(header=b"c2sp.org/tlog-proof@v2\n")),
    ("header with CR", _proof(header=b"c2sp.org/tlog-proof@v1\r\n")),
    ("header with trailing space", _proof(header=b"c2sp.org/tlog-proof@v1 \n")),
    ("missing index", _proof(index=b"")),
    ("index with leading zero", _proof(index=b"index 03\n")),
    ("negative index", _proof(index=b"index -3\n")),
    ("index with plus", _proof(index=b"index +3\n")),
    ("index with two spaces", _proof(index=b"index  3\n")),
    ("index without number", _proof(index=b"index \n")),
    ("index keyword only", _proof(index=b"index\n")),
    ("index in capitals", _proof(index=b"INDEX 3\n")),
    ("index above 2^64-1", _proof(index=b"index %d\n" % 2**64)),
    ("index equal to tree size", _proof(index=b"index 10\n")),
    ("index beyond tree size", _proof(index=b"index 11\n")),
    ("empty extra", _proof(extra=b"extra \n")),
    ("extra not canonical", _proof(extra=b"extra AB==\n")),
    ("extra not base64", _proof(extra=b"extra not base64!\n")),
    ("extra twice", _proof(extra=b"extra AA==\nextra AA==\n")),
    ("extra after index", _proof(index=b"index 3\nextra AA==\n", hashes=b"")),
    ("hash of 31 bytes", _proof(hashes=base64.b64encode(bytes(31)) + b"\n")),
    ("hash of 33 bytes", _proof(hashes=base64.b64encode(bytes(33)) + b"\n")),
    ("hash unpadded", _proof(hashes=_H.rstrip(b"=") + b"\n")),
    ("hash url-safe", _proof(hashes=base64.urlsafe_b64encode(b"\xff" * 32) + b"\n")),
    ("hash with trailing space", _proof(hashes=_H + b" \n")),
    ("hash not ASCII", _proof(hashes=_H[:-1] + b"\xc3\xa9\n")),
    ("no blank line", _proof(blank=b"")),
    ("two blank lines", _proof(blank=b"\n\n")),
    ("truncated note", _proof(note=NOTE[:-1])),
    ("no note", _proof(note=b"")),
    ("note without signatures", _proof(note=CHECKPOINT.to_text().encode())),
    (
        "checkpoint with extension line",
        _proof(note=sign_checkpoint(CHECKPOINT, [KEY]).replace(b"=\n\n", b"=\next\n\n", 1)),
    ),
    ("not a checkpoint", _proof(note="hello\n\n\u2014 a AAAAAAA=\n".encode())),
]


@pytest.mark.parametrize(("case", "data"), PROOF_REJECTIONS, ids=[c for c, _ in PROOF_REJECTIONS])
def test_proof_rejections(case: str, data: bytes) -> None:
    with pytest.raises(FormatError):
        TlogProof.from_bytes(data)


def test_default_layout_parses() -> None:
    proof = TlogProof.from_bytes(_proof())
    assert proof.index == 3
    assert proof.hashes == HASHES[:2]
    assert proof.to_bytes() == _proof()


def test_hash_count_is_bounded() -> None:
    data = _proof(hashes=b"".join(base64.b64encode(h) + b"\n" for h in HASHES[:3]))
    TlogProof.from_bytes(data, Limits(max_proof_hashes=3))
    with pytest.raises(FormatError, match="more than 2"):
        TlogProof.from_bytes(data, Limits(max_proof_hashes=2))


def test_size_is_bounded_before_parsing() -> None:
    data = _proof()
    TlogProof.from_bytes(data, Limits(max_receipt_bytes=len(data)))
    with pytest.raises(FormatError, match="limit"):
        TlogProof.from_bytes(data, Limits(max_receipt_bytes=len(data) - 1))


def test_embedded_note_is_bounded_by_note_limits() -> None:
    with pytest.raises(FormatError):
        TlogProof.from_bytes(_proof(), Limits(max_note_bytes=len(NOTE) - 1))


@pytest.mark.parametrize(
    ("index", "hashes", "note", "extra"),
    [
        (-1, (), NOTE, None),
        (2**64, (), NOTE, None),
        (0, (bytes(31),), NOTE, None),
        (0, (), NOTE, b""),
        (0, (), b"no note", None),
    ],
)
def test_constructor_misuse(
    index: int, hashes: tuple[bytes, ...], note: bytes, extra: bytes | None
) -> None:
    with pytest.raises(UsageError):
        TlogProof(index, hashes, note, extra)


@given(
    index=st.integers(0, CHECKPOINT.size - 1),
    hashes=st.lists(st.binary(min_size=32, max_size=32), max_size=8),
    extra=st.none() | st.binary(min_size=1, max_size=64),
)
def test_round_trip_is_byte_exact(index: int, hashes: list[bytes], extra: bytes | None) -> None:
    proof = TlogProof(index, tuple(hashes), NOTE, extra)
    data = proof.to_bytes()
    parsed = TlogProof.from_bytes(data)
    assert parsed == proof
    assert parsed.to_bytes() == data


@given(st.data())
def test_parser_only_raises_format_error_on_mutations(data: st.DataObject) -> None:
    base = bytearray(SPEC_PROOF)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.integers(0, 255))
    try:
        parsed = TlogProof.from_bytes(bytes(base))
    except FormatError:
        return
    assert parsed.to_bytes() == bytes(base)


@given(st.binary(max_size=200))
def test_parser_only_raises_format_error_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        TlogProof.from_bytes(b"c2sp.org/tlog-proof@v1\n" + data)

"""Row anchoring: derived keys, canonical row bytes, the fast hasher, batch anchor shape."""

from __future__ import annotations

import hashlib
import hmac
import os
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import anchors
from ledger.anchors import RowHasher, RowKeys, check_rows, columns_header, row_bytes
from ledger.errors import FormatError
from ledger.privacy import commitment, pseudonym
from ledger.records import decode_body
from proto import ledger_pb2

SECRET = bytes(range(32))
COLUMNS = ("name", "score", "born")
values = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(),
                   st.binary(), st.booleans())


def test_row_keys_follow_the_documented_derivation() -> None:
    keys = RowKeys.derive(SECRET, "registry/persons")
    k_p = hmac.digest(SECRET, b"shadowledger/mirror/pseudonym/v1\nregistry/persons", "sha256")
    k_s = hmac.digest(SECRET, b"shadowledger/mirror/salt/v1\nregistry/persons", "sha256")
    payload = row_bytes(columns_header(COLUMNS), ["Ann", 1.5, None])
    digest = keys.digest("42", "7", payload)
    nym = pseudonym(k_p, "42")
    assert digest.key_pseudonym == nym
    assert digest.commitment == commitment(hmac.digest(k_s, nym + b"7", "sha256"), payload)


def test_sources_and_secrets_give_unlinkable_pseudonyms() -> None:
    a = RowKeys.derive(SECRET, "registry/persons").pseudonym("42")
    assert a != RowKeys.derive(SECRET, "registry/vehicles").pseudonym("42")
    assert a != RowKeys.derive(os.urandom(32), "registry/persons").pseudonym("42")


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(FormatError, match="at least 32 bytes"):
        RowKeys.derive(b"x" * 31, "s")


@given(st.text(min_size=1), st.text(), st.lists(values, min_size=3, max_size=3))
def test_fast_hasher_equals_the_reference(key: str, version: str, row: list[object]) -> None:
    keys = RowKeys.derive(SECRET, "s")
    fast = RowHasher(keys, COLUMNS).digest([key, version, *row])
    ref = keys.digest(key, version, row_bytes(columns_header(COLUMNS), row))
    assert fast == (key, ref.key_pseudonym, version, ref.commitment)


@given(st.binary(max_size=100), st.binary(max_size=200))
def test_precomputed_hmac_equals_hmac(key: bytes, message: bytes) -> None:
    assert anchors._Hmac(key)(message) == hmac.digest(key, message, "sha256")


def test_values_of_different_types_never_encode_alike() -> None:
    encoded = [anchors.value_bytes(v) for v in (1, "1", b"1", 1.0, True, None, Decimal(1))]
    assert len(set(encoded)) == len(encoded)
    assert anchors.value_bytes(Decimal("1.50")) == b"T\x00\x00\x00\x041.50"  # str(), tagged
    # A split between columns cannot move: lengths are part of the bytes.
    header = columns_header(("a", "b"))
    assert row_bytes(header, ["ab", "c"]) != row_bytes(header, ["a", "bc"])


def test_column_names_and_order_are_committed() -> None:
    keys = RowKeys.derive(SECRET, "s")
    row = ["Ann", 1]
    first = RowHasher(keys, ("name", "age")).digest(["1", "1", *row])
    assert first != RowHasher(keys, ("name", "years")).digest(["1", "1", *row])
    assert first != RowHasher(keys, ("age", "name")).digest(["1", "1", *row[::-1]])


def test_keys_and_versions_that_are_not_text() -> None:
    keys = RowKeys.derive(SECRET, "s")
    hasher = RowHasher(keys, ("x",))
    assert hasher.digest([7, 3, None])[:3:2] == ("7", "3")
    assert hasher.digest([b"\x01\xff", 3, None])[0] == "01ff"


def _anchor(**row: bytes | str) -> ledger_pb2.RecordBody:
    fields: dict[str, bytes | str] = {"key_pseudonym": b"p" * 32, "version": "1",
                                      "commitment": b"c" * 32, **row}
    return ledger_pb2.RecordBody(
        network="n", agency="a", nonce=os.urandom(16),
        anchor=ledger_pb2.Anchor(source="s", rows=[ledger_pb2.AnchoredRow(**fields)]))


@pytest.mark.parametrize("row, message", [
    ({"key_pseudonym": b"short"}, "32 bytes"),
    ({"commitment": b""}, "32 bytes"),
    ({"version": "v" * 256}, "over 255 bytes"),
])
def test_malformed_batch_anchors_are_refused_by_every_node(
        row: dict[str, bytes | str], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode_body(_anchor(**row).SerializeToString())


def test_a_batch_anchor_must_name_its_source() -> None:
    body = _anchor()
    body.anchor.source = ""
    with pytest.raises(FormatError, match="name its source"):
        check_rows(body.anchor)


def test_well_formed_batch_anchor_decodes() -> None:
    body = decode_body(_anchor().SerializeToString())
    assert anchors.anchored_rows(body.anchor) == [(b"p" * 32, "1", b"c" * 32)]


def test_findings_digest_does_not_depend_on_order() -> None:
    lines = [b"a", b"b", b"c"]
    assert anchors.findings_digest(lines) == anchors.findings_digest(lines[::-1])
    assert anchors.findings_digest(lines) != anchors.findings_digest(lines[:2])
    assert len(anchors.findings_digest([])) == hashlib.sha256().digest_size

"""C2SP tlog-cosignature/v1 (Ed25519) witness cosignatures (ledger.cosignature)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from ledger.checkpoint import Checkpoint, checkpoint_signature, sign_checkpoint
from ledger.cosignature import (
    MAX_TIMESTAMP,
    cosign,
    cosigned_message,
    verify_cosignature,
    verify_cosignatures,
)
from ledger.errors import FormatError, SignatureError, UsageError
from ledger.keys import ALG_COSIGNATURE_V1, SigningKey
from ledger.note import Note, NoteSignature

EM = "\u2014"

# c2sp.org/tlog-cosignature: the example checkpoint with a witness cosignature, and the
# signed message for time 1679315147. The witness key is not published: parse only.
SPEC_CHECKPOINT = Checkpoint(
    "example.com/behind-the-sofa",
    20852163,
    bytes.fromhex("0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"),
)
SPEC_NOTE = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    f"{EM} example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    f"{EM} witness.example.com/w1 "
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
).encode()
SPEC_MESSAGE = (
    b"cosignature/v1\n"
    b"time 1679315147\n"
    b"example.com/behind-the-sofa\n"
    b"20852163\n"
    b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)

CHECKPOINT = Checkpoint("ledger.example/agencies", 7, hashlib.sha256(b"r").digest())
NOW = 1_700_000_000


def _witness(i: int) -> SigningKey:
    seed = hashlib.sha256(b"w%d" % i).digest()
    return SigningKey(f"witness-{i}.example", seed, ALG_COSIGNATURE_V1)


def test_signed_message_matches_the_spec_bytes() -> None:
    assert cosigned_message(SPEC_CHECKPOINT, 1679315147) == SPEC_MESSAGE


def test_spec_example_cosignature_layout() -> None:
    note = Note.from_bytes(SPEC_NOTE)
    assert note.to_bytes() == SPEC_NOTE
    cosig = note.signatures[1]
    assert cosig.name == "witness.example.com/w1"
    assert cosig.key_id.hex() == "8d66cf3f"
    assert len(cosig.signature) == 72
    # timestamped_signature.timestamp, big-endian: the time in the spec's message example.
    assert int.from_bytes(cosig.signature[:8], "big") == 1679315147


def test_spec_example_with_no_known_witness() -> None:
    result = verify_cosignatures(SPEC_NOTE, [_witness(1).verifier])
    assert result.checkpoint == SPEC_CHECKPOINT
    assert result.cosignatures == ()
    assert result.unknown == 2


def test_cosign_and_verify() -> None:
    witness = _witness(1)
    line = cosign(CHECKPOINT, witness, NOW)
    assert line.name == witness.name
    assert (
        line.key_id
        == hashlib.sha256(witness.name.encode() + b"\n\x04" + witness.verifier.public_key).digest()[
            :4
        ]
    )
    assert line.signature[:8] == NOW.to_bytes(8, "big")
    assert verify_cosignature(CHECKPOINT, line, witness.verifier) == NOW


def test_cosignature_verifies_with_an_independent_implementation() -> None:
    witness = _witness(2)
    line = cosign(CHECKPOINT, witness, NOW)
    message = b"cosignature/v1\ntime %d\n" % NOW + CHECKPOINT.to_text().encode()
    Ed25519PublicKey.from_public_bytes(witness.verifier.public_key).verify(
        line.signature[8:], message
    )


def test_tampering_is_detected() -> None:
    witness = _witness(1)
    line = cosign(CHECKPOINT, witness, NOW)
    later = NoteSignature(line.name, line.key_id, (NOW + 1).to_bytes(8, "big") + line.signature[8:])
    flipped = NoteSignature(line.name, line.key_id, line.signature[:-1] + b"\x00")
    short = NoteSignature(line.name, line.key_id, line.signature[:-1])
    huge_ts = NoteSignature(line.name, line.key_id, b"\x80" + bytes(7) + line.signature[8:])
    for bad in (later, flipped, short, huge_ts):
        with pytest.raises(SignatureError):
            verify_cosignature(CHECKPOINT, bad, witness.verifier)
    other = Checkpoint(CHECKPOINT.origin, CHECKPOINT.size + 1, CHECKPOINT.root_hash)
    with pytest.raises(SignatureError):
        verify_cosignature(other, line, witness.verifier)
    with pytest.raises(SignatureError, match="not witness"):
        verify_cosignature(CHECKPOINT, line, _witness(2).verifier)


def test_timestamp_range() -> None:
    witness = _witness(1)
    for ts in (0, MAX_TIMESTAMP):
        assert (
            verify_cosignature(CHECKPOINT, cosign(CHECKPOINT, witness, ts), witness.verifier) == ts
        )
    for ts in (-1, MAX_TIMESTAMP + 1):
        with pytest.raises(UsageError):
            cosign(CHECKPOINT, witness, ts)


def test_key_types_are_not_interchangeable() -> None:
    seed = bytes(range(32))
    as_validator = SigningKey("dual.example", seed)
    as_witness = SigningKey("dual.example", seed, ALG_COSIGNATURE_V1)
    with pytest.raises(UsageError):
        cosign(CHECKPOINT, as_validator, NOW)
    with pytest.raises(UsageError):
        verify_cosignature(CHECKPOINT, cosign(CHECKPOINT, as_witness, NOW), as_validator.verifier)
    # A validator signature is an unknown line for the witness policy, and vice versa.
    note = Note(
        CHECKPOINT.to_text(),
        (checkpoint_signature(CHECKPOINT, as_validator), cosign(CHECKPOINT, as_witness, NOW)),
    )
    result = verify_cosignatures(note.to_bytes(), [as_witness.verifier])
    assert [c.witness for c in result.cosignatures] == [as_witness.verifier]
    assert result.unknown == 1


def test_verify_cosignatures_on_a_validator_signed_checkpoint() -> None:
    validators = [SigningKey(f"v{i}.example", bytes([i]) * 32) for i in range(4)]
    witnesses = [_witness(i) for i in range(3)]
    note = Note.from_bytes(sign_checkpoint(CHECKPOINT, validators))
    note = note.with_signatures(
        [
            cosign(CHECKPOINT, witnesses[0], NOW),
            cosign(CHECKPOINT, witnesses[1], NOW),
            cosign(CHECKPOINT, witnesses[0], NOW + 60),  # the same witness, later
        ]
    )
    result = verify_cosignatures(note.to_bytes(), [w.verifier for w in witnesses])
    assert result.unknown == 4
    assert {(c.witness.name, c.timestamp) for c in result.cosignatures} == {
        ("witness-0.example", NOW + 60),
        ("witness-1.example", NOW),
    }
    assert result.witnesses == frozenset(w.verifier.key_hash for w in witnesses[:2])


def test_a_bad_cosignature_from_a_known_witness_rejects() -> None:
    witness = _witness(0)
    good = cosign(CHECKPOINT, witness, NOW)
    bad = NoteSignature(good.name, good.key_id, good.signature[:8] + bytes(64))
    note = Note(CHECKPOINT.to_text(), (good, bad))
    with pytest.raises(SignatureError):
        verify_cosignatures(note.to_bytes(), [witness.verifier])


def test_verify_cosignatures_rejects_malformed_checkpoints() -> None:
    witness = _witness(0)
    with pytest.raises(FormatError):
        verify_cosignatures(b"not a note", [witness.verifier])


@given(ts=st.integers(0, MAX_TIMESTAMP), size=st.integers(0, 2**64 - 1))
def test_cosign_verify_round_trip(ts: int, size: int) -> None:
    witness = _witness(3)
    cp = Checkpoint("o.example", size, bytes(32))
    line = cosign(cp, witness, ts)
    parsed = Note.from_bytes(Note(cp.to_text(), (line,)).to_bytes()).signatures[0]
    assert verify_cosignature(cp, parsed, witness.verifier) == ts

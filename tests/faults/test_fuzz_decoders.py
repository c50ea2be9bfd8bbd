"""Hostile bytes into every decoder: the only outcomes allowed are success or a
``VerificationError`` (the input is at fault: FormatError, SignatureError, ProofError,
ChainError). Anything else (IndexError, struct.error, UnicodeDecodeError, UsageError,
a protobuf DecodeError leaking out, a crash) is a bug (STYLE.md: h11's fuzz invariant).

Each decoder gets random bytes and mutations of a valid sample (bit flips, truncation,
insertion, splicing), so the fuzzer reaches deep into the format, not only its first
check. ``FUZZ_EXAMPLES`` (default 200 per decoder) scales the run; the soak uses more.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.certificate import CommitCertificate
from consensus.crypto import Ed25519Signer, sign_proposal, sign_vote
from consensus.events import SafetyState, Step
from consensus.evidence import Equivocation
from consensus.messages import Proposal, Vote, VoteType
from ledger import merkle
from ledger.blocks import Block, BlockHeader, build_block
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import cosign, verify_cosignatures
from ledger.errors import VerificationError
from ledger.genesis import Agency, Genesis, TrustRoot, Validator, genesis_hash
from ledger.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey
from ledger.note import Note, NoteSignature
from ledger.receipts import ConsistencyProof, final_checkpoint, verify_receipt
from ledger.records import Envelope, sign_record, verify_envelope
from ledger.tlogproof import TlogProof
from proto import ledger_pb2

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
NET = "fuzz.shadow-ledger.example/v1"


def _seeded(tag: str) -> Callable[[int], bytes]:
    return lambda n: hashlib.sha256(tag.encode()).digest()[:n]


AGENCY = SigningKey.generate("agency-a", _seeded("agency"))
VALIDATORS = [SigningKey.generate(f"validator-{i}", _seeded(f"v{i}")) for i in range(4)]
WITNESS = SigningKey.generate("witness", _seeded("witness"), ALG_COSIGNATURE_V1)
GENESIS = Genesis(NET, tuple(Validator(k.verifier) for k in VALIDATORS),
                  (Agency("agency-a", (AGENCY.verifier,)),))
GENESIS_BYTES = GENESIS.to_bytes()
TRUST = TrustRoot(tuple(GENESIS.validator_keys), GENESIS.threshold, NET, GENESIS.keyring(),
                  genesis_hash(GENESIS_BYTES))
ENVELOPE = sign_record(ledger_pb2.RecordBody(
    network=NET, agency="agency-a", nonce=bytes(16),
    anchor=ledger_pb2.Anchor(source="registry/persons", version="1", commitment=bytes(32)),
), AGENCY)
BLOCK = build_block(NET, None, genesis_hash(GENESIS_BYTES), [ENVELOPE.raw], merkle.Frontier(),
                    1_700_000_000_000, VALIDATORS[0].verifier.key_hash)
CHECKPOINT = Checkpoint(NET, 1, BLOCK.header.tree_root)
NOTE = sign_checkpoint(CHECKPOINT, VALIDATORS[:3])
COSIGNED = NOTE + cosign(CHECKPOINT, WITNESS, 1_700_000_000).to_line().encode()
RECEIPT = TlogProof(0, (), NOTE).to_bytes()
CONSISTENCY = ConsistencyProof(1, 2, (hashlib.sha256(b"x").digest(),)).to_bytes()
SIGNERS = [Ed25519Signer(k.seed) for k in VALIDATORS]
CHAIN = genesis_hash(GENESIS_BYTES)
VOTE = sign_vote(SIGNERS[0], CHAIN, 1, 0, VoteType.PREVOTE, BLOCK.hash)
VOTE2 = sign_vote(SIGNERS[0], CHAIN, 1, 0, VoteType.PREVOTE, None)
PROPOSAL = sign_proposal(SIGNERS[0], CHAIN, 1, 0, -1, BLOCK.hash)
CERT = CommitCertificate.from_precommits(
    [sign_vote(s, CHAIN, 1, 0, VoteType.PRECOMMIT, BLOCK.hash) for s in SIGNERS[:3]])
EVIDENCE = Equivocation.of(VOTE, VOTE2)


def _text(fn: Callable[[str], Any]) -> Callable[[bytes], Any]:
    return lambda data: fn(data.decode("utf-8", "surrogateescape"))


# decoder name -> (decode function over bytes, a valid sample)
DECODERS: dict[str, tuple[Callable[[bytes], Any], bytes]] = {
    "envelope": (Envelope.from_bytes, ENVELOPE.raw),
    "record": (lambda b: verify_envelope(Envelope.from_bytes(b), GENESIS.keyring(), NET),
               ENVELOPE.raw),
    "block": (Block.from_bytes, BLOCK.to_bytes()),
    "block header": (BlockHeader.from_bytes, BLOCK.header.to_bytes()),
    "note": (Note.from_bytes, NOTE),
    "note signature line": (_text(NoteSignature.from_line), NOTE.rsplit(b"\n", 2)[-2]),
    "checkpoint text": (_text(Checkpoint.from_text), CHECKPOINT.to_text().encode()),
    "final checkpoint": (lambda b: final_checkpoint(b, TRUST), NOTE),
    "cosignatures": (lambda b: verify_cosignatures(b, [WITNESS.verifier]), COSIGNED),
    "tlog-proof receipt": (TlogProof.from_bytes, RECEIPT),
    "receipt verification": (lambda b: verify_receipt(b, ENVELOPE.raw, TRUST), RECEIPT),
    "consistency proof file": (ConsistencyProof.from_bytes, CONSISTENCY),
    "genesis json": (Genesis.from_bytes, GENESIS_BYTES),
    "bare vkeys trust root": (TrustRoot.from_vkeys,
                              "\n".join(k.verifier.to_vkey() for k in VALIDATORS).encode()),
    "vkey": (_text(VerifierKey.from_vkey), AGENCY.verifier.to_vkey().encode()),
    "vote": (Vote.from_bytes, VOTE.to_bytes()),
    "proposal": (Proposal.from_bytes, PROPOSAL.to_bytes()),
    "commit certificate": (CommitCertificate.from_bytes, CERT.to_bytes()),
    "equivocation evidence": (Equivocation.from_bytes, EVIDENCE.to_bytes()),
}


@st.composite
def mutated(draw: st.DrawFn, sample: bytes) -> bytes:
    """A valid sample, damaged a few times: flip, cut, insert, duplicate or splice."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "cut", "insert", "dup", "set")))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            data = data[:pos] if draw(st.booleans()) else data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
        elif data:
            data[pos] = draw(st.sampled_from((0, 0x0A, 0x20, 0x2B, 0x7F, 0xFF)))
    return bytes(data)


def hostile(sample: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2 * len(sample) + 16), mutated(sample))


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_accepts_or_refuses_cleanly(name: str) -> None:
    decode, sample = DECODERS[name]
    decode(sample)  # the sample itself is valid: the mutations start from real input

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile(sample))
    def check(data: bytes) -> None:
        with contextlib.suppress(VerificationError):
            decode(data)

    check()


def test_safety_state_refuses_cleanly() -> None:
    """The consensus safety record is local (our own LMDB), but a torn or flipped copy
    must still be refused with a clear error, never half-loaded."""
    sample = SafetyState(1, 0, Step.PREVOTE, 0, BLOCK.hash, 0, BLOCK.hash, BLOCK.to_bytes(),
                         (PROPOSAL, VOTE), BLOCK.to_bytes()).to_bytes()
    SafetyState.from_bytes(sample)

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(hostile(sample))
    def check(data: bytes) -> None:
        with contextlib.suppress(VerificationError):
            SafetyState.from_bytes(data)

    check()

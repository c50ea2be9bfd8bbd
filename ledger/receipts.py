"""Offline verification of receipts and checkpoint consistency, trusting only genesis keys.

Once governance changed the membership, pass the verified membership chain
(``ledger/membership_chain.py``: ``MembershipHistory``): a checkpoint of size T must then be
signed by the validators of ``history.for_size(T)`` and a record by a key in force at its
index (``history.at_index(i)``), so old receipts stay verifiable after key rotations and a
checkpoint signed by a removed validator set after its removal is refused.

A receipt is a C2SP tlog-proof@v1 file (index, inclusion proof hashes, checkpoint signed
by validators) plus the record's envelope bytes, which are the Merkle leaf.

There is no C2SP format for a bare consistency proof, so this module defines a minimal
one in the same style (ASCII lines, base64 hashes):
    shadowledger/consistency-proof/v1
    old <size1>
    new <size2>
    <base64 hash>            (one line per proof hash, RFC 9162 2.1.4.1 order)
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger import merkle
from ledger.checkpoint import Checkpoint, check_checkpoint
from ledger.errors import FormatError, SignatureError
from ledger.genesis import TrustRoot
from ledger.keys import decode_base64, encode_base64
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.membership_chain import MembershipHistory
from ledger.note import Note
from ledger.records import Envelope, Record, verify_envelope
from ledger.tlogproof import TlogProof
from ledger.witness_policy import WitnessPolicy, require_witnesses

CONSISTENCY_HEADER = "shadowledger/consistency-proof/v1"


@dataclass(frozen=True)
class VerifiedReceipt:
    index: int
    checkpoint: Checkpoint
    signed_by: tuple[str, ...]
    record: Record | None
    """The decoded record when the trust root knows the agencies' record keys."""
    witnessed_by: tuple[str, ...] = ()
    """Witnesses whose cosignatures were verified (only with a witness policy)."""


def final_checkpoint(note: bytes, trust: TrustRoot, limits: Limits = DEFAULT_LIMITS,
                     history: MembershipHistory | None = None
                     ) -> tuple[Checkpoint, tuple[str, ...]]:
    """The checkpoint if a quorum of trusted validators signed it, else ``SignatureError``.

    With a membership ``history``, the trusted validators are those of the membership
    that signs checkpoints of its size."""
    parsed = Note.from_bytes(note, limits)
    origin = trust.network
    if origin is None:  # bare keys: the origin is whatever they signed
        origin = parsed.text.split("\n", 1)[0]
    validators, threshold, whose = trust.validators, trust.threshold, ""
    if history is not None:
        size = Checkpoint.from_text(parsed.text, limits).size
        number = history.number_for_size(size)
        membership = history.memberships[number]
        validators, threshold = tuple(membership.validator_keys), membership.threshold
        whose = f" (membership {number} signs this size)"
    result = check_checkpoint(note, validators, threshold, origin=origin, limits=limits)
    if not result.verified:
        cp = result.checkpoint
        known = {(k.name, k.key_id) for k in validators}
        strangers = [s.name for s in parsed.signatures if (s.name, s.key_id) not in known]
        hint = ""
        if strangers and history is None and trust.genesis_hash is not None:
            hint = ("; signed by validators not in the genesis; pass --chain (the membership "
                    "chain) if governance changed them")
        elif strangers:
            hint = f"; signatures by keys not trusted for this size: {', '.join(strangers)}"
        raise SignatureError(f"checkpoint {cp.origin} at size {cp.size}: {result.describe()}"
                             f"{whose}{hint}")
    return result.checkpoint, tuple(k.name for k in result.signed)


def verify_receipt(
    receipt: bytes, record: bytes, trust: TrustRoot, limits: Limits = DEFAULT_LIMITS,
    policy: WitnessPolicy | None = None, history: MembershipHistory | None = None,
) -> VerifiedReceipt:
    """Check that ``record`` is in the ledger under a quorum-signed checkpoint.

    With a witness ``policy``, the checkpoint must also carry the witness cosignatures
    its quorum asks for (tlog-policy), else SignatureError. With a membership
    ``history`` (a verified membership chain), the checkpoint's signers and the record's
    key are those in force for its size and index.
    """
    proof = TlogProof.from_bytes(receipt, limits)
    checkpoint, signers = final_checkpoint(proof.checkpoint_note, trust, limits, history)
    witnessed: tuple[str, ...] = ()
    if policy is not None:
        witnessed = require_witnesses(proof.checkpoint_note, policy, limits)
    leaf = merkle.leaf_hash(record)
    merkle.verify_inclusion(leaf, proof.index, checkpoint.size, list(proof.hashes),
                            checkpoint.root_hash)
    decoded = None
    keyring = trust.keyring if history is None else history.at_index(proof.index).keyring()
    if keyring is not None and trust.network is not None:
        envelope = Envelope.from_bytes(record, limits)
        if history is None and keyring.get(envelope.signer) is None:
            raise SignatureError(f"record signer {envelope.signer[:4].hex()} is not a record "
                                 "key of the genesis; pass --chain (the membership chain) if "
                                 "governance rotated record keys")
        decoded = verify_envelope(envelope, keyring, trust.network)
    return VerifiedReceipt(proof.index, checkpoint, signers, decoded, witnessed)


@dataclass(frozen=True)
class ConsistencyProof:
    size1: int
    size2: int
    hashes: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        lines = [CONSISTENCY_HEADER, f"old {self.size1}", f"new {self.size2}"]
        lines += [encode_base64(h) for h in self.hashes]
        return ("\n".join(lines) + "\n").encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> ConsistencyProof:
        if len(data) > limits.max_receipt_bytes:
            raise FormatError(f"consistency proof is {len(data)} bytes, over the limit")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise FormatError("consistency proof is not ASCII") from exc
        if not text.endswith("\n"):
            raise FormatError("consistency proof must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or lines[0] != CONSISTENCY_HEADER:
            raise FormatError(f"consistency proof does not start with {CONSISTENCY_HEADER}")
        size1 = _size_line(lines[1], "old")
        size2 = _size_line(lines[2], "new")
        if len(lines) - 3 > limits.max_proof_hashes:
            raise FormatError(f"consistency proof has {len(lines) - 3} hashes, over the limit")
        hashes = tuple(decode_base64(line, "proof hash") for line in lines[3:])
        return cls(size1, size2, hashes)


def _size_line(line: str, word: str) -> int:
    prefix = word + " "
    digits = line[len(prefix) :]
    if not line.startswith(prefix) or not digits.isdigit() or (len(digits) > 1 and
                                                                digits[0] == "0"):
        raise FormatError(f"expected a line '{word} <decimal size>', got {line[:40]!r}")
    return int(digits)


def verify_checkpoint_consistency(
    old_note: bytes, new_note: bytes, proof: bytes, trust: TrustRoot,
    limits: Limits = DEFAULT_LIMITS, history: MembershipHistory | None = None,
) -> tuple[Checkpoint, Checkpoint]:
    """Both checkpoints final under ``trust`` (each under the membership that signs its
    size, with a ``history``), and the newer tree extends the older."""
    old, _ = final_checkpoint(old_note, trust, limits, history)
    new, _ = final_checkpoint(new_note, trust, limits, history)
    if old.origin != new.origin:
        raise FormatError(f"checkpoints are for different logs: {old.origin} and {new.origin}")
    parsed = ConsistencyProof.from_bytes(proof, limits)
    if (parsed.size1, parsed.size2) != (old.size, new.size):
        raise FormatError(
            f"proof is from size {parsed.size1} to {parsed.size2}, checkpoints are"
            f" {old.size} and {new.size}"
        )
    merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash,
                              list(parsed.hashes))
    return old, new

"""The membership chain: how an auditor holding only the genesis learns every membership.

For each adoption i >= 1 the chain holds the proposal and approval envelopes (exact bytes)
with their leaf indices and RFC 9162 inclusion proofs against a checkpoint note of size
T_i (the tree size after the adopting block) signed by a quorum of M_{i-1}'s validators.
Verification (``verify_chain``) starts at M_0 = the genesis membership and, for each
transition, checks with M_{i-1} only: the checkpoint's quorum, every inclusion proof,
every record signature under M_{i-1}'s record keys, that the first record proposes a
membership with base = hash(M_{i-1}) and the others approve it, that the authors are
distinct voters of M_{i-1} and exactly M_{i-1}.approvals of them (adoption happens when
the count is reached), and T_{i-1} <= every index < T_i. Then M_i is the proposal's
membership. The result, ``MembershipHistory``, answers which membership signs a
checkpoint of a given size and which record keys were in force at a leaf index
(docs/GOVERNANCE.md).

Format: UTF-8 JSON, sorted keys:
    {"format": "shadowledger/membership-chain/v1", "network": ORIGIN,
     "transitions": [{"number": i, "tree_size": T_i, "checkpoint": NOTE TEXT,
                      "records": [{"index": N, "envelope": BASE64,
                                   "proof": [BASE64 HASH, ...]}, ...]}, ...]}
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger import merkle
from ledger.checkpoint import check_checkpoint
from ledger.errors import FormatError, SignatureError, UsageError, VerificationError
from ledger.genesis import Genesis
from ledger.governance import APPROVE, PROPOSE, Transition, parse_action
from ledger.keys import decode_base64, encode_base64
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.membership import Membership
from ledger.records import Envelope, Keyring, verify_envelope
from ledger.tlogproof import TlogProof

FORMAT = "shadowledger/membership-chain/v1"
CHAIN_FILE = "membership-chain.json"
"""Its name next to an export's ``checkpoint`` and next to receipts cut by the CLI."""
MAX_CHAIN_BYTES = 64 << 20
MAX_TRANSITIONS = 100_000


class MembershipChainError(VerificationError):
    """The membership chain does not verify; the message names the transition and why."""


@dataclass(frozen=True)
class MembershipHistory:
    """M_0..M_k with T_1 < .. < T_k: which membership is in force for a tree size."""

    memberships: tuple[Membership, ...]
    sizes: tuple[int, ...]
    """T_i for i = 1..k (``sizes[i - 1]``)."""

    @classmethod
    def genesis_only(cls, genesis: Genesis) -> MembershipHistory:
        return cls((Membership.from_genesis(genesis),), ())

    def number_for_size(self, size: int) -> int:
        """k = number of adoptions with T_i < size."""
        return bisect.bisect_left(self.sizes, size)

    def for_size(self, size: int) -> Membership:
        """The membership whose validators sign checkpoints of tree ``size``."""
        return self.memberships[self.number_for_size(size)]

    def at_index(self, index: int) -> Membership:
        """The membership in force when the record at leaf ``index`` was committed."""
        return self.for_size(index + 1)

    def key_ranges(self) -> dict[bytes, list[tuple[int, int]]]:
        """For every record key ever in force: the leaf index ranges [first, end) in which
        it is (end -1: to the end of the log)."""
        bounds = (0, *self.sizes)
        ranges: dict[bytes, list[tuple[int, int]]] = {}
        for number, membership in enumerate(self.memberships):
            first = bounds[number]
            end = self.sizes[number] if number < len(self.sizes) else -1
            for agency in membership.agencies:
                for key in agency.record_keys:
                    spans = ranges.setdefault(key.key_hash, [])
                    if spans and spans[-1][1] == first:
                        spans[-1] = (spans[-1][0], end)  # still in force: one range
                    else:
                        spans.append((first, end))
        return ranges

    def all_keys(self) -> Keyring:
        return Keyring(k for m in self.memberships for a in m.agencies for k in a.record_keys)


# --- building ----------------------------------------------------------------------------


class LedgerLike(Protocol):
    """What building a chain reads (``Ledger`` and ``ExportReader`` both offer it)."""

    def index_of(self, rid: bytes) -> int | None: ...

    def record(self, index: int) -> bytes: ...

    def receipt(self, index: int, size: int | None = None) -> bytes: ...


def build_chain(ledger: LedgerLike, network: str, transitions: Sequence[Transition]) -> bytes:
    """The chain for ``transitions`` (``GovernanceBook.history()``) from ``ledger``'s
    records, proofs and the stored checkpoints at each T_i; ``UsageError`` if one of them
    is not in the ledger (yet)."""
    out = []
    for t in transitions:
        records = []
        note = b""
        for rid in t.record_ids:
            index = ledger.index_of(rid)
            if index is None:
                raise UsageError(f"transition {t.number}: record {rid.hex()[:16]} is not in "
                                 "the ledger")
            proof = TlogProof.from_bytes(ledger.receipt(index, t.tree_size))
            note = proof.checkpoint_note
            records.append({"index": index,
                            "envelope": encode_base64(ledger.record(index)),
                            "proof": [encode_base64(h) for h in proof.hashes]})
        out.append({"number": t.number, "tree_size": t.tree_size,
                    "checkpoint": note.decode("utf-8"), "records": records})
    doc = {"format": FORMAT, "network": network, "transitions": out}
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def chain_up_to(ledger: LedgerLike, network: str, transitions: Sequence[Transition],
                size: int) -> bytes | None:
    """The chain of the transitions whose T_i <= ``size`` (what verifying checkpoints and
    receipts of sizes up to ``size`` needs); None when there are none (the genesis is
    enough)."""
    within = [t for t in transitions if t.tree_size <= size]
    return build_chain(ledger, network, within) if within else None


# --- verifying ---------------------------------------------------------------------------


def verify_chain(data: bytes, genesis: Genesis, limits: Limits = DEFAULT_LIMITS
                 ) -> MembershipHistory:
    """Replay the chain from the genesis; ``MembershipChainError`` names the first bad place."""
    if len(data) > MAX_CHAIN_BYTES:
        raise FormatError(f"membership chain is {len(data)} bytes, over {MAX_CHAIN_BYTES}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"membership chain is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else None
        raise FormatError(f"membership chain format is {got!r}, want {FORMAT!r}")
    if doc.get("network") != genesis.network:
        raise MembershipChainError(f"membership chain is for network {doc.get('network')!r}, "
                                   f"the genesis for {genesis.network!r}")
    transitions = doc.get("transitions")
    if not isinstance(transitions, list) or len(transitions) > MAX_TRANSITIONS:
        raise FormatError("membership chain: transitions must be a list")
    memberships = [Membership.from_genesis(genesis)]
    sizes: list[int] = []
    for number, entry in enumerate(transitions, 1):
        try:
            new, size = _transition(number, entry, memberships[-1], sizes[-1] if sizes else 0,
                                    genesis.network, limits)
        except MembershipChainError:
            raise
        except (VerificationError, ValueError, KeyError, TypeError) as exc:
            raise MembershipChainError(f"membership chain transition {number}: {exc}") from exc
        memberships.append(new)
        sizes.append(size)
    return MembershipHistory(tuple(memberships), tuple(sizes))


def _transition(number: int, entry: Any, old: Membership, previous_size: int, network: str,
                limits: Limits) -> tuple[Membership, int]:
    def fail(why: str) -> MembershipChainError:
        return MembershipChainError(f"membership chain transition {number}: {why}")

    if not isinstance(entry, dict) or entry.get("number") != number:
        raise fail("transitions must be numbered 1, 2, ... in order")
    size = entry["tree_size"]
    if not isinstance(size, int) or size <= previous_size:
        raise fail(f"tree size {size!r} does not grow past {previous_size}")
    result = check_checkpoint(str(entry["checkpoint"]).encode("utf-8"), old.validator_keys,
                              old.threshold, origin=network, limits=limits)
    if not result.verified:
        raise fail(f"checkpoint not signed by a quorum of membership {number - 1}'s "
                   f"validators ({result.describe()})")
    checkpoint = result.checkpoint
    if checkpoint.size != size:
        raise fail(f"checkpoint is for size {checkpoint.size}, the transition says {size}")
    records = entry["records"]
    if not isinstance(records, list) or not records:
        raise fail("no proposal")
    keyring = old.keyring()
    last_index = -1
    authors: list[str] = []
    proposal_id, new = b"", None
    for position, item in enumerate(records):
        index = item["index"]
        if not isinstance(index, int) or not previous_size <= index < size:
            raise fail(f"record index {index!r} is outside [{previous_size}, {size})")
        if index <= last_index:
            raise fail("records are not in ledger order")
        last_index = index
        raw = decode_base64(str(item["envelope"]), "envelope")
        proof = [decode_base64(str(h), "proof hash") for h in item["proof"]]
        try:
            merkle.verify_inclusion(merkle.leaf_hash(raw), index, size, proof,
                                    checkpoint.root_hash)
        except VerificationError as exc:
            raise fail(f"record {index} is not in the checkpointed tree: {exc}") from exc
        try:
            record = verify_envelope(Envelope.from_bytes(raw, limits), keyring, network)
        except SignatureError as exc:
            raise fail(f"record {index}: {exc} (under membership {number - 1})") from exc
        action = parse_action(record)
        if position == 0:
            if action.action != PROPOSE:
                raise fail(f"record {index} is an approval, the first must be the proposal")
            if action.base != old.hash:
                raise fail(f"proposal {index} has base {action.base.hex()[:16]}, not the hash "
                           f"of membership {number - 1} ({old.hash.hex()[:16]})")
            proposal_id, new = action.record_id, action.membership
        elif action.action != APPROVE or action.proposal_id != proposal_id:
            raise fail(f"record {index} does not approve proposal {proposal_id.hex()[:16]}")
        if action.author not in old.voters:
            raise fail(f"record {index} is by {action.author}, not a voter of membership "
                       f"{number - 1}")
        if action.author in authors:
            raise fail(f"record {index}: {action.author} approves twice")
        authors.append(action.author)
    if len(authors) != old.approvals:
        raise fail(f"{len(authors)} distinct approvals, membership {number - 1} adopts with "
                   f"exactly {old.approvals}")
    assert new is not None
    if new.hash == old.hash:
        raise fail("the proposal does not change the membership")
    return new, size

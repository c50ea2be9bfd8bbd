"""Invariants checked on every simulator step; the first breach raises ``InvariantViolation``."""

from __future__ import annotations

from collections.abc import Callable

from consensus.certificate import CommitCertificate, check_certificate
from consensus.crypto import signature_is_valid, signer_of
from consensus.evidence import Equivocation, verify_evidence
from consensus.messages import SignedMessage, Step, Vote
from consensus.sim.app import block_id_of, is_valid_block
from consensus.validators import ValidatorSet
from ledger.errors import VerificationError


class InvariantViolation(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class SignatureCache:
    """Verified (key, message, signature) triples, shared by every simulated node: a
    signature is checked once however many nodes receive it (as a node caches by hash)."""

    def __init__(self) -> None:
        self._good: set[tuple[bytes, bytes, bytes]] = set()
        self.checks = 0

    def __call__(self, key: bytes, message: bytes, signature: bytes) -> bool:
        triple = (key, message, signature)
        if triple in self._good:
            return True
        self.checks += 1
        if not signature_is_valid(key, message, signature):
            return False
        self._good.add(triple)
        return True


def position_of(message: SignedMessage) -> tuple[int, int, int]:
    step = message.vote_type if isinstance(message, Vote) else Step.PROPOSE
    return (message.height, message.round, int(step))


class Monitor:
    """Agreement, validity, certificates, no honest double-sign, persist-before-release,
    and evidence that always verifies and never accuses an honest validator."""

    def __init__(
        self, validators: Callable[[int], ValidatorSet], chain_id: bytes, honest: set[bytes],
        cache: SignatureCache,
    ) -> None:
        self._vals, self._chain, self._honest, self._cache = validators, chain_id, honest, cache
        self.decided: dict[int, bytes] = {}
        self._signed: dict[tuple[bytes, int, int, int], bytes] = {}
        self.evidence: set[bytes] = set()
        self.commits = 0

    def on_signed(self, message: SignedMessage, persisted: tuple[int, int, int] | None) -> None:
        """An honest node released a signed message."""
        position = position_of(message)
        if persisted is None or persisted < position:
            raise InvariantViolation(
                "persist-before-release", f"{position} released, durable position {persisted}"
            )
        if signer_of(message) not in self._vals(message.height):
            detail = f"{position} signed by a node outside that height's validator set"
            raise InvariantViolation("non-member-signed", detail)
        slot = (signer_of(message), *position)
        earlier = self._signed.setdefault(slot, message.sign_bytes())
        if earlier != message.sign_bytes():
            detail = f"validator slot {slot[1:]} signed twice"
            raise InvariantViolation("honest-double-sign", detail)

    def on_commit(
        self, node: int, height: int, block_id: bytes, block: bytes, cert: CommitCertificate
    ) -> None:
        try:
            check_certificate(cert, self._vals(height), self._chain, self._cache)
        except VerificationError as exc:
            raise InvariantViolation("certificate", f"node {node} h={height}: {exc}") from exc
        if (cert.height, cert.block_id) != (height, block_id):
            raise InvariantViolation("certificate", f"node {node} h={height}: wrong block")
        if block_id_of(block) != block_id or not is_valid_block(height, block):
            detail = f"node {node} committed an invalid block h={height}"
            raise InvariantViolation("validity", detail)
        first = self.decided.setdefault(height, block_id)
        if first != block_id:
            raise InvariantViolation(
                "agreement", f"node {node} h={height}: {block_id.hex()[:12]} != {first.hex()[:12]}"
            )
        self.commits += 1

    def on_evidence(self, node: int, evidence: Equivocation) -> None:
        try:
            verify_evidence(evidence, self._vals(evidence.height), self._chain)
        except VerificationError as exc:
            detail = f"node {node} reported bad evidence: {exc}"
            raise InvariantViolation("evidence", detail) from exc
        if evidence.validator in self._honest:
            raise InvariantViolation("evidence", f"node {node} accused an honest validator")
        self.evidence.add(evidence.to_bytes())

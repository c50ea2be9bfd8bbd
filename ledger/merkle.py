"""RFC 9162 section 2.1 Merkle tree hashing, proofs and their verification (SHA-256).

The proof *generation* logic is written once over one storage hook (``NodeSource``): a
store only has to return the hashes of perfect, aligned subtrees ("nodes"), addressed as
``(level, index)`` where the node covers leaves ``[index << level, (index + 1) << level)``.
The in-memory ``MemoryTree`` and the LMDB store both use it.

Verification follows RFC 9162 2.1.3.2 and 2.1.4.2 step by step. The pre-checks before
those algorithms (sizes, empty proofs, hash lengths) follow transparency-dev/merkle so
that every conformance vector in shared/testdata/rfc9162 gives its expected outcome.
Domain separation (0x00 leaf prefix, 0x01 node prefix) has no off switch.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol

from ledger.errors import ProofError, UsageError
from ledger.limits import DEFAULT_LIMITS

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""RFC 9162 2.1.1: MTH({}) = SHA-256()."""

_sha256 = hashlib.sha256
_LEAF_PREFIX = _sha256(b"\x00")
_NODE_PREFIX = b"\x01"

Node = tuple[int, int]
"""(level, index): the perfect subtree over leaves [index << level, (index + 1) << level)."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 2.1.1: MTH({d0}) = SHA-256(0x00 || d0)."""
    h = _LEAF_PREFIX.copy()
    h.update(data)
    return h.digest()


def leaf_hashes(items: Iterable[bytes]) -> list[bytes]:
    """Leaf hashes of many entries; the hot path of every append."""
    prefix = _LEAF_PREFIX
    out = []
    for data in items:
        h = prefix.copy()
        h.update(data)
        out.append(h.digest())
    return out


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def parent_level(hashes: Sequence[bytes]) -> list[bytes]:
    """Hashes of the complete pairs of ``hashes``; an odd last element is left out."""
    it = iter(hashes)
    sha, prefix = _sha256, _NODE_PREFIX
    return [sha(prefix + a + b).digest() for a, b in zip(it, it, strict=False)]


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Root of perfect subtrees listed left to right with strictly decreasing sizes."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root(hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH over already-computed leaf hashes."""
    if not hashes:
        return EMPTY_ROOT
    peaks: list[bytes] = []
    level = list(hashes)
    while level:
        if len(level) % 2:
            peaks.append(level[-1])
        level = parent_level(level)
    # Peaks were collected from the lowest (rightmost) up; fold from the right.
    return fold_right(peaks[::-1])


# --- proof generation over a storage hook -------------------------------------------


class NodeSource(Protocol):
    """What a store must offer for proofs: hashes of perfect subtrees it holds."""

    def nodes(self, wanted: Sequence[Node]) -> list[bytes]:
        """Return the hash of every requested node, in order."""
        ...


def range_nodes(lo: int, hi: int) -> list[Node]:
    """Perfect subtrees covering leaves [lo, hi), left to right.

    Every range produced by the RFC 9162 2.1.3.1 / 2.1.4.1 recursions starts at a
    multiple of its largest power-of-two part, so the binary decomposition of the
    width gives aligned nodes.
    """
    out: list[Node] = []
    width = hi - lo
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            out.append((level, lo >> level))
            lo += 1 << level
    return out


def _split(n: int) -> int:
    """RFC 9162 2.1.1: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PATH(index, D[size]) (RFC 9162 2.1.3.1), deepest first."""
    if not 0 <= index < size:
        raise UsageError(f"leaf index {index} is outside a tree of size {size}")
    lo, hi = 0, size
    path: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PROOF(size1, D[size2]) (RFC 9162 2.1.4.1)."""
    if not 0 < size1 <= size2:
        raise UsageError(f"no consistency proof from size {size1} to size {size2}")
    lo, hi, m, complete = 0, size2, size1, True
    out: list[tuple[int, int]] = []
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            out.append((lo + k, hi))
            hi = lo + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            out.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        out.append((lo, hi))  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
    out.reverse()
    return out


def hashes_of_ranges(source: NodeSource, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each range, fetching every needed node from ``source`` in one call."""
    plans = [range_nodes(lo, hi) for lo, hi in ranges]
    flat = [node for plan in plans for node in plan]
    fetched = iter(source.nodes(flat))
    return [fold_right([next(fetched) for _ in plan]) for plan in plans]


def root_from(source: NodeSource, size: int) -> bytes:
    """MTH(D[size]) from stored perfect subtrees: O(log size) node reads."""
    if size == 0:
        return EMPTY_ROOT
    return hashes_of_ranges(source, [(0, size)])[0]


def prove_inclusion(source: NodeSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 2.1.3.1 inclusion proof for leaf ``index`` in the tree of ``size`` leaves."""
    return hashes_of_ranges(source, inclusion_ranges(index, size))


def prove_consistency(source: NodeSource, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 2.1.4.1 consistency proof between tree sizes ``size1`` and ``size2``."""
    if size1 == size2:
        return []
    return hashes_of_ranges(source, consistency_ranges(size1, size2))


class ProvingTree:
    """Root and proofs at any size up to ``size``, for a store that implements ``nodes``.

    Mixed into the stores (LMDB ``TreeStore``, an export's ``TileTree``) so that proof
    serving is written once over the one storage hook."""

    @property
    def size(self) -> int:
        raise NotImplementedError

    def nodes(self, wanted: Sequence[Node]) -> list[bytes]:
        raise NotImplementedError

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise UsageError(f"tree size {size} is beyond the stored size {self.size}")

    def root(self, size: int | None = None) -> bytes:
        """Root hash at ``size`` (default: now); any past size works."""
        size = self.size if size is None else size
        self._check_size(size)
        return root_from(self, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        self._check_size(size)
        return prove_inclusion(self, index, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else size2
        self._check_size(size2)
        return prove_consistency(self, size1, size2)

    def leaf(self, index: int) -> bytes:
        return self.nodes([(0, index)])[0]


class MemoryTree:
    """An in-memory tree holding every level; for tests, tools and small exports."""

    def __init__(self, hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self.extend(hashes)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def extend(self, hashes: Iterable[bytes]) -> None:
        """Append leaf hashes, keeping every complete node."""
        new = list(hashes)
        level = 0
        while new:
            row = self._levels[level]
            start = len(row) & ~1  # a pending left sibling is paired again
            row.extend(new)
            new = parent_level(row[start:])
            level += 1
            if new and len(self._levels) == level:
                self._levels.append([])

    def nodes(self, wanted: Sequence[Node]) -> list[bytes]:
        return [self._levels[level][index] for level, index in wanted]

    def root(self, size: int | None = None) -> bytes:
        return root_from(self, self.size if size is None else size)


# --- verification (RFC 9162 2.1.3.2 and 2.1.4.2) -------------------------------------


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes long, want {HASH_SIZE}")


def _check_proof_length(proof: Sequence[bytes]) -> None:
    if len(proof) > DEFAULT_LIMITS.max_proof_hashes:
        raise ProofError(f"proof has {len(proof)} hashes, more than any valid proof")
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 2.1.3.2 steps 1-4)."""
    if index < 0 or size < 0:
        raise ProofError(f"negative index {index} or tree size {size}")
    if index >= size:  # step 1
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash("leaf hash", leaf)
    _check_proof_length(proof)
    fn, sn, r = index, size - 1, leaf  # steps 2-3
    sha, one = _sha256, _NODE_PREFIX  # node_hash inlined: this loop is the verify hot path
    for p in proof:  # step 4
        if sn == 0:  # 4a
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # 4b
            r = sha(one + p + r).digest()
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = sha(one + r + p).digest()
        fn >>= 1  # 4c
        sn >>= 1
    if sn != 0:  # step 5, first half
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: list[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: raise ``ProofError`` unless ``proof`` puts the leaf under ``root``."""
    computed = root_from_inclusion(leaf_hash, index, tree_size, proof)
    if not hmac.compare_digest(computed, root):  # step 5, second half
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the given root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> None:
    """RFC 9162 2.1.4.2: raise ``ProofError`` unless tree ``size1`` is a prefix of ``size2``."""
    if size1 < 0 or size2 < 0:
        raise ProofError(f"negative tree size {size1} or {size2}")
    if size2 < size1:
        raise ProofError(f"tree size {size2} is smaller than earlier size {size1}")
    if size1 == 0:
        # Every tree extends the empty tree: such a proof proves nothing and is refused.
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("sizes are equal, so the proof must be empty")
        if not hmac.compare_digest(root1, root2):
            raise ProofError(f"two different roots for the same tree size {size1}")
        return
    if not proof:  # step 1
        raise ProofError("consistency proof is empty")
    _check_hash("first root", root1)
    _check_hash("second root", root2)
    _check_proof_length(proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # step 2: first is an exact power of 2
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:  # 6a
            raise ProofError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:  # 6b
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1  # 6c
        sn >>= 1
    # step 7
    if sn != 0:
        raise ProofError("consistency proof is shorter than needed")
    if not hmac.compare_digest(fr, root1):
        raise ProofError(f"consistency proof does not reproduce the root of size {size1}")
    if not hmac.compare_digest(sr, root2):
        raise ProofError(f"consistency proof does not reproduce the root of size {size2}")


class Frontier:
    """The right edge of a growing tree: O(log n) memory, enough for its root.

    Used by verifiers that stream a whole ledger: they recompute every block's root
    without holding the leaves.
    """

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []  # perfect subtrees, largest first
        self._taps: dict[int, list[bytes]] = {}

    def watch(self, level: int) -> list[bytes]:
        """A list that every subtree hash of ``level`` >= 1 (over ``2**level`` leaves) computed
        from now on is appended to, left to right: a caller checking hash tiles takes the
        nodes this frontier hashes anyway instead of hashing them again. Empty it as you
        read it."""
        return self._taps.setdefault(level, [])

    def append(self, leaf: bytes) -> None:
        self._peaks.append(leaf)
        self.size += 1
        n, level = self.size, 0
        while not n & 1:  # merge equal-sized subtrees, as binary addition carries
            right = self._peaks.pop()
            self._peaks[-1] = node_hash(self._peaks[-1], right)
            n >>= 1
            level += 1
            if level in self._taps:
                self._taps[level].append(self._peaks[-1])

    def extend(self, leaves: Iterable[bytes]) -> None:
        """``append`` of each leaf, a level at a time: a block's leaves are paired with
        ``parent_level`` (one comprehension per level, not a Python loop per leaf)."""
        carry = list(leaves)
        size, peaks, count = self.size, self._peaks, len(carry)
        kept: list[bytes] = []  # new peaks, lowest level first
        level = 0
        while carry:
            if level and level in self._taps:
                self._taps[level].extend(carry)
            if size >> level & 1:  # the old peak of this level is left of the new nodes
                carry.insert(0, peaks.pop())
            if len(carry) & 1:
                kept.append(carry.pop())
            carry = parent_level(carry)
            level += 1
        peaks.extend(reversed(kept))
        self.size = size + count

    def root(self) -> bytes:
        return fold_right(self._peaks) if self._peaks else EMPTY_ROOT

    def copy(self) -> Frontier:
        twin = Frontier()
        twin.size, twin._peaks = self.size, list(self._peaks)
        return twin

    @classmethod
    def from_source(cls, source: NodeSource, size: int) -> Frontier:
        """The frontier of a stored tree at ``size``: its perfect subtrees, O(log n) reads."""
        frontier = cls()
        frontier.size = size
        frontier._peaks = source.nodes(range_nodes(0, size)) if size else []
        return frontier

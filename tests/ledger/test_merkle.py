"""RFC 9162 tree: exhaustive small trees, property tests and a second-preimage attack."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import ProofError, UsageError

MAX = 300
LEAVES = [merkle.leaf_hash(b"entry %d" % i) for i in range(MAX)]


def _reference_mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 written as the recursive definition, as an oracle."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return merkle.node_hash(_reference_mth(hashes[:k]), _reference_mth(hashes[k:]))


FULL = merkle.MemoryTree(LEAVES)
ROOTS = [_reference_mth(LEAVES[:n]) for n in range(MAX + 1)]


def test_known_answers() -> None:
    assert merkle.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(
        b"\x01" + b"a" * 32 + b"b" * 32
    ).digest()
    assert merkle.leaf_hashes([b"x", b"y"]) == [merkle.leaf_hash(b"x"), merkle.leaf_hash(b"y")]


def test_roots_of_every_size_match_the_recursive_definition() -> None:
    for n in range(MAX + 1):
        assert merkle.root(LEAVES[:n]) == ROOTS[n], n
        assert FULL.root(n) == ROOTS[n], n


def test_memory_tree_grows_in_uneven_batches() -> None:
    tree = merkle.MemoryTree()
    start = 0
    for step in [1, 2, 3, 5, 7, 11, 13, 64, 1, 100]:
        tree.extend(LEAVES[start : start + step])
        start += step
        assert tree.root() == ROOTS[start]


def test_every_index_of_every_size_proves_and_verifies() -> None:
    for n in range(1, MAX + 1):
        root = ROOTS[n]
        for i in range(n):
            proof = merkle.prove_inclusion(FULL, i, n)
            merkle.verify_inclusion(LEAVES[i], i, n, proof, root)


def test_every_pair_of_sizes_is_consistent() -> None:
    for n2 in range(1, MAX + 1):
        for n1 in range(1, n2 + 1):
            proof = merkle.prove_consistency(FULL, n1, n2)
            merkle.verify_consistency(n1, n2, ROOTS[n1], ROOTS[n2], proof)


def test_proof_requests_outside_the_tree_are_misuse() -> None:
    with pytest.raises(UsageError):
        merkle.prove_inclusion(FULL, 5, 5)
    with pytest.raises(UsageError):
        merkle.prove_consistency(FULL, 0, 5)
    with pytest.raises(UsageError):
        merkle.prove_consistency(FULL, 6, 5)


def _flip(value: bytes, bit: int) -> bytes:
    b = bytearray(value)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _sibling_sides(index: int, size: int) -> list[bool] | None:
    """For each proof element, whether it is hashed on the left; None if no such leaf."""
    if not 0 <= index < size:
        return None
    return [hi <= index for _, hi in merkle.inclusion_ranges(index, size)]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_single_bit_change_to_an_inclusion_proof_is_rejected(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, MAX), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = merkle.prove_inclusion(FULL, i, n)
    root = ROOTS[n]
    target = data.draw(st.sampled_from(["proof", "root", "leaf", "index", "size"]))
    if target == "proof" and not proof:
        target = "root"
    if target == "proof":
        k = data.draw(st.integers(0, len(proof) - 1))
        proof[k] = _flip(proof[k], data.draw(st.integers(0, 255)))
        with pytest.raises(ProofError):
            merkle.verify_inclusion(LEAVES[i], i, n, proof, root)
    elif target in ("root", "leaf"):
        bit = data.draw(st.integers(0, 255))
        leaf, bad_root = LEAVES[i], root
        if target == "root":
            bad_root = _flip(root, bit)
        else:
            leaf = _flip(leaf, bit)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, i, n, proof, bad_root)
    elif target == "index":
        j = i ^ (1 << data.draw(st.integers(0, 63)))
        with pytest.raises(ProofError):
            merkle.verify_inclusion(LEAVES[i], j, n, proof, root)
    else:
        m = n ^ (1 << data.draw(st.integers(0, 63)))
        if _sibling_sides(i, m) == _sibling_sides(i, n):
            # RFC 9162 2.1.3.2 binds the size only through the path's shape: a size with
            # the same shape for this index gives the same root. Checkpoints sign size
            # and root together, which is why receipts carry a checkpoint, not a size.
            merkle.verify_inclusion(LEAVES[i], i, m, proof, root)
        else:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(LEAVES[i], i, m, proof, root)


def _consistency_shape(size1: int, size2: int) -> tuple[bool, list[bool]] | None:
    """Whether root1 seeds the proof, and which elements also rebuild the old root."""
    if not 0 < size1 < size2:
        return None
    ranges = merkle.consistency_ranges(size1, size2)
    return size1 & (size1 - 1) == 0, [hi <= size1 for _, hi in ranges]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_single_bit_change_to_a_consistency_proof_is_rejected(data: st.DataObject) -> None:
    n2 = data.draw(st.integers(2, MAX), label="size2")
    n1 = data.draw(st.integers(1, n2 - 1), label="size1")
    proof = merkle.prove_consistency(FULL, n1, n2)
    r1, r2 = ROOTS[n1], ROOTS[n2]
    sizes = (n1, n2)
    target = data.draw(st.sampled_from(["proof", "root1", "root2", "size1", "size2"]))
    bit = data.draw(st.integers(0, 255))
    if target == "proof":
        k = data.draw(st.integers(0, len(proof) - 1))
        proof[k] = _flip(proof[k], bit)
    elif target == "root1":
        r1 = _flip(r1, bit)
    elif target == "root2":
        r2 = _flip(r2, bit)
    elif target == "size1":
        n1 ^= 1 << data.draw(st.integers(0, 63))
    else:
        n2 ^= 1 << data.draw(st.integers(0, 63))
    if target.startswith("size") and _consistency_shape(n1, n2) == _consistency_shape(*sizes):
        # As for inclusion: sizes are bound through the proof's shape only (RFC 9162
        # 2.1.4.2); signed checkpoints bind each size to its root.
        merkle.verify_consistency(n1, n2, r1, r2, proof)
    else:
        with pytest.raises(ProofError):
            merkle.verify_consistency(n1, n2, r1, r2, proof)


def test_second_preimage_attack_is_refused() -> None:
    """Presenting an interior node as a leaf must not verify (why 0x00/0x01 exist)."""
    n = 8
    interior = merkle.node_hash(LEAVES[0], LEAVES[1])
    proof = merkle.prove_inclusion(FULL, 0, n)[1:]  # the forged tree of 4 "leaves"
    # The forger claims entry = LEAVES[0] || LEAVES[1] is leaf 0 of a 4-leaf tree.
    forged_leaf = merkle.leaf_hash(LEAVES[0] + LEAVES[1])
    assert forged_leaf != interior
    with pytest.raises(ProofError):
        merkle.verify_inclusion(forged_leaf, 0, 4, proof, ROOTS[n])
    # Without the prefixes the attack would work: the interior hash does verify.
    merkle.verify_inclusion(interior, 0, 4, proof, ROOTS[n])


def test_oversized_proof_is_refused_before_hashing() -> None:
    with pytest.raises(ProofError, match="more than any valid proof"):
        merkle.verify_inclusion(LEAVES[0], 0, 2, [LEAVES[1]] * 1000, ROOTS[2])


def test_frontier_root_matches_at_every_size() -> None:
    frontier = merkle.Frontier()
    assert frontier.root() == merkle.EMPTY_ROOT
    for n in range(1, MAX + 1):
        frontier.append(LEAVES[n - 1])
        assert frontier.root() == ROOTS[n], n


def test_frontier_extend_in_batches_matches_one_leaf_at_a_time() -> None:
    """``extend`` pairs a batch level by level; from every start size and for batches of
    every length up to 70 (and empty ones) it must keep the peaks ``append`` keeps."""
    for start in range(0, 70):
        for count in range(0, 71):
            batched = merkle.Frontier()
            batched.extend(LEAVES[:start])
            batched.extend(iter(LEAVES[start : start + count]))  # any iterable
            single = merkle.Frontier()
            for leaf in LEAVES[: start + count]:
                single.append(leaf)
            assert (batched.size, batched._peaks) == (single.size, single._peaks), (start, count)
            assert batched.root() == ROOTS[start + count]


def test_frontier_extend_continues_a_stored_frontier() -> None:
    for start, count in ((5, 295), (64, 1), (77, 200), (256, 44)):
        frontier = merkle.Frontier.from_source(FULL, start)
        frontier.extend(LEAVES[start : start + count])
        assert frontier.root() == ROOTS[start + count] and frontier.size == start + count


def test_frontier_watch_yields_every_subtree_of_a_level_once_in_order() -> None:
    """``watch(level)`` gets the hash of each complete ``2**level``-leaf subtree as the
    frontier computes it, through ``extend`` in uneven batches or ``append``."""
    for level in (1, 3, 5):
        width = 1 << level
        want = [merkle.root(LEAVES[i : i + width]) for i in range(0, MAX - width + 1, width)]
        for batch in (1, 7, 64, 100):
            frontier = merkle.Frontier()
            seen = frontier.watch(level)
            got = []
            for start in range(0, MAX, batch):
                if batch == 1:
                    frontier.append(LEAVES[start])
                else:
                    frontier.extend(LEAVES[start : start + batch])
                got += seen
                seen.clear()
            assert got == want, (level, batch)


def test_frontier_from_stored_nodes_continues_like_the_tree() -> None:
    for n in (0, 1, 5, 64, 77, 299):
        frontier = merkle.Frontier.from_source(FULL, n)
        assert frontier.root() == ROOTS[n]
        twin = frontier.copy()
        twin.append(LEAVES[n])
        assert twin.root() == ROOTS[n + 1] and frontier.size == n

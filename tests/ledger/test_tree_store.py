"""The LMDB Merkle tree against the in-memory reference, across reopen and corruption."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import CorruptStoreError, UsageError
from ledger.storage import Storage, StorageConfig
from ledger.tree_store import TILE_WIDTH, TreeStore

LEAVES = [merkle.leaf_hash(b"leaf %d" % i) for i in range(2000)]
REF = merkle.MemoryTree(LEAVES)
CONFIG = StorageConfig(map_size=1 << 28)


def _open(path: Path) -> tuple[Storage, TreeStore]:
    storage = Storage(path, CONFIG)
    return storage, TreeStore(storage)


def _build(path: Path, batches: list[int]) -> tuple[Storage, TreeStore]:
    storage, tree = _open(path)
    start = 0
    for size in batches:
        tree.append_durably(LEAVES[start : start + size])
        start += size
    return storage, tree


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 150), min_size=1, max_size=12))
def test_batches_of_any_size_give_reference_roots_and_proofs(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int]
) -> None:
    storage, tree = _build(tmp_path_factory.mktemp("t"), batches)
    n = tree.size
    assert n == sum(batches)
    for size in {1, n // 2 or 1, n - 1 or 1, n}:
        assert tree.root(size) == REF.root(size)
        for index in {0, size // 3, size - 1}:
            proof = tree.inclusion_proof(index, size)
            assert proof == merkle.prove_inclusion(REF, index, size)
            merkle.verify_inclusion(LEAVES[index], index, size, proof, REF.root(size))
        if size < n:
            proof = tree.consistency_proof(size, n)
            merkle.verify_consistency(size, n, REF.root(size), REF.root(n), proof)
    assert tree.check_all() > 0
    storage.close()


def test_every_index_and_size_up_to_200_from_lmdb(tmp_path: Path) -> None:
    storage, tree = _build(tmp_path, [7, 1, 64, 33, 95])
    for size in range(1, 201):
        root = REF.root(size)
        assert tree.root(size) == root
        for index in range(size):
            assert tree.inclusion_proof(index, size) == merkle.prove_inclusion(REF, index, size)
    storage.close()


def test_reopening_gives_the_same_root_and_appends_continue(tmp_path: Path) -> None:
    storage, tree = _build(tmp_path, [TILE_WIDTH * 3, 5, TILE_WIDTH - 5])
    root = tree.root()
    storage.close()
    storage, tree = _open(tmp_path)
    assert tree.size == TILE_WIDTH * 4
    assert tree.root() == root
    tree.append_durably(LEAVES[tree.size : tree.size + 77])
    assert tree.root() == REF.root(TILE_WIDTH * 4 + 77)
    storage.close()


def test_aborted_transaction_leaves_the_tree_as_committed(tmp_path: Path) -> None:
    storage, tree = _build(tmp_path, [10])
    with pytest.raises(RuntimeError), storage.write() as txn:
        tree.append(txn, LEAVES[10:20])
        raise RuntimeError("crash before commit")
    assert tree.size == 10
    assert tree.root() == REF.root(10)
    tree.append_durably(LEAVES[10:13])
    assert tree.root() == REF.root(13)
    storage.close()


def test_proofs_beyond_the_stored_size_are_misuse(tmp_path: Path) -> None:
    storage, tree = _build(tmp_path, [10])
    with pytest.raises(UsageError):
        tree.root(11)
    with pytest.raises(UsageError):
        tree.inclusion_proof(3, 11)
    with pytest.raises(UsageError):
        tree.inclusion_proof(10, 10)
    storage.close()


def _corrupt_every_copy(path: Path, needle: bytes) -> None:
    """Flip one bit in every copy (LMDB's freed pages may hold stale ones)."""
    data = path / "data.mdb"
    blob = bytearray(data.read_bytes())
    at = blob.find(needle)
    assert at >= 0
    while at >= 0:
        blob[at] ^= 0x01
        at = blob.find(needle, at + 1)
    data.write_bytes(bytes(blob))


def test_a_flipped_bit_in_a_stored_hash_is_detected(tmp_path: Path) -> None:
    storage, tree = _build(tmp_path, [500])
    storage.close()
    _corrupt_every_copy(tmp_path, LEAVES[40])
    storage, tree = _open(tmp_path)  # the right edges are intact: opening succeeds
    with pytest.raises(CorruptStoreError, match="checksum"):
        tree.inclusion_proof(40, 500)
    with pytest.raises(CorruptStoreError):
        tree.check_all()
    storage.close()


def test_a_flipped_bit_on_the_right_edge_is_detected_on_open(tmp_path: Path) -> None:
    storage, _ = _build(tmp_path, [500])
    storage.close()
    _corrupt_every_copy(tmp_path, LEAVES[499])
    with pytest.raises(CorruptStoreError):
        _open(tmp_path)


def test_a_truncated_data_file_is_detected_on_open(tmp_path: Path) -> None:
    storage, _ = _build(tmp_path, [3000 - 1000])
    storage.close()
    data = tmp_path / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(CorruptStoreError, match="truncated"):
        _open(tmp_path)


def test_a_rolled_back_size_is_detected_on_open(tmp_path: Path) -> None:
    storage, _ = _build(tmp_path, [100])
    with storage.write() as txn:
        txn.put(b"tree.size", struct.pack(">Q", 64), db=storage.db(b"meta"))
    storage.close()
    with pytest.raises(CorruptStoreError):
        _open(tmp_path)


def test_a_foreign_layout_is_refused(tmp_path: Path) -> None:
    storage, _ = _build(tmp_path, [3])
    with storage.write() as txn:
        txn.put(b"layout", b"something-else/9", db=storage.db(b"meta"))
    storage.close()
    with pytest.raises(CorruptStoreError, match="layout"):
        _open(tmp_path)


@pytest.mark.parametrize("batch", [1, 3, 1 << 14])
def test_check_all_streams_and_finds_a_resealed_wrong_node(tmp_path: Path, batch: int) -> None:
    from ledger.tree_store import _locate, _seal, _unseal

    storage, tree = _build(tmp_path, [500])
    assert tree.check_all(batch) == sum(500 >> level for level in range(9))
    key, offset = _locate(1, 100)  # an inner node, off the right edge: open does not see it
    with storage.write() as txn:
        body = bytearray(_unseal(key, txn.get(key, db=storage.db(b"tree"))))
        body[offset] ^= 0x01
        txn.put(key, _seal(key, body), db=storage.db(b"tree"))
    storage.close()
    storage, tree = _open(tmp_path)
    with pytest.raises(CorruptStoreError, match="tree level 1 does not hash"):
        tree.check_all(batch)
    storage.close()

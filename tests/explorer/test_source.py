"""Opening a ledger store read-only, and following it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import StorageError
from ledger.genesis import genesis_hash
from ledger.ledger_store import Ledger
from ledger.storage import Storage, StorageConfig
from node.explorer.source import LedgerReader, open_store_reader
from tests.explorer.ledger_fixture import build


def test_a_read_only_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    built, ledger = build(tmp_path / "net")
    head, root = ledger.head, ledger.tree.root()
    ledger.storage.close()
    reader = open_store_reader(tmp_path / "net" / "node", built.genesis_bytes)
    try:
        as_protocol: LedgerReader = reader  # what the explorer is written against
        assert as_protocol.head == head
        assert reader.record(3) == built.envelopes[3].raw
        assert reader.latest_checkpoint() is not None
        storage = reader._ledger.storage
        with pytest.raises(StorageError, match="opened read-only"), storage.write() as txn:
            txn.put(b"x", b"y", db=storage.db(b"meta"))
        assert reader._ledger.tree.root() == root
    finally:
        reader.close()


def test_refresh_sees_blocks_committed_after_opening(tmp_path: Path) -> None:
    built, ledger = build(tmp_path / "net")
    ledger.storage.close()
    with Storage(tmp_path / "net" / "node", StorageConfig(readonly=True)) as storage:
        follower = Ledger(storage, genesis_hash(built.genesis_bytes))
        assert follower.refresh() == follower.head and follower.head.height == 5


def test_no_store_no_directory_created(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no ledger store here"):
        Storage(tmp_path / "absent", StorageConfig(readonly=True))
    assert not (tmp_path / "absent").exists()

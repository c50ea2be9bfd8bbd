"""The store drops the map's resident pages every few writes or every interval."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.bench_pages import SMAPS, mapped_pages
from ledger import storage as storage_module
from ledger.storage import Storage, StorageConfig


def _fill(store: Storage, transactions: int, per_txn: int = 2000) -> None:
    for _ in range(transactions):
        with store.write() as txn:
            for _ in range(per_txn):
                txn.put(os.urandom(32), os.urandom(200))


@pytest.mark.skipif(not SMAPS.exists(), reason="reads Linux smaps")
def test_trim_drops_the_data_files_resident_pages(tmp_path: Path) -> None:
    with Storage(tmp_path, StorageConfig(trim_every=0)) as store:
        _fill(store, 10)
        with store.read() as txn:
            assert sum(1 for _ in txn.cursor()) >= 20_000  # every page read once
        before = mapped_pages(tmp_path / "data.mdb")
        assert before > 1024  # 4 MiB
        assert store.trim_resident() > 0
        assert mapped_pages(tmp_path / "data.mdb") < 128  # 0.5 MiB
        with store.read() as txn:  # the data is still there, read back from the file
            assert sum(1 for _ in txn.cursor()) >= 20_000


def _count_trims(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def counted(path: Path) -> int:
        calls.append(path)
        return 0

    monkeypatch.setattr(storage_module, "_madvise_dontneed", counted)
    return calls


def test_trims_every_n_writes_while_writes_come_fast(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_trims(monkeypatch)
    with Storage(tmp_path, StorageConfig(trim_every=4, trim_interval_s=3600)) as store:
        _fill(store, 10, per_txn=1)
    assert len(calls) == 2  # after writes 4 and 8


def test_trims_at_the_first_write_after_the_interval(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_trims(monkeypatch)
    clock = [1000.0]
    monkeypatch.setattr(storage_module.time, "monotonic", lambda: clock[0])
    with Storage(tmp_path, StorageConfig(trim_every=100, trim_interval_s=1.0)) as store:
        _fill(store, 3, per_txn=1)
        assert calls == []
        clock[0] += 1.5
        _fill(store, 1, per_txn=1)
        assert len(calls) == 1
        _fill(store, 3, per_txn=1)  # the interval starts again at that trim
        assert len(calls) == 1


def test_no_trim_when_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_trims(monkeypatch)
    clock = [1000.0]
    monkeypatch.setattr(storage_module.time, "monotonic", lambda: clock[0])
    with Storage(tmp_path, StorageConfig(trim_every=0)) as store:
        clock[0] += 10
        _fill(store, 5, per_txn=1)
    assert calls == []

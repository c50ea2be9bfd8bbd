"""Online backups of a node's store, and their verified restore.

A backup is two files: ``data.mdb``, a compacted LMDB copy taken inside one read
transaction of a read-only environment opened beside the running node (LMDB copies a
live environment consistently: the reader's slot in ``lock.mdb`` keeps the writer from
reusing the pages of its snapshot), and ``manifest.json``, which says what the copy
holds (head height and hash, tree size and root, genesis hash) and its SHA-256.
They are kept as a folder, or as one tar file when the output name ends in ``.tar``.

Restoring trusts nothing in the backup: the checksum must match, the copy must open as
a store, its tree must re-hash from the leaves (``TreeStore.check_all``), every block
must link to the previous one and to the genesis with the right sizes and roots
(``ChainVerifier``), and head and root must be those the manifest names. Only then is
the copy moved into place, by a rename on the same filesystem.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from ledger import merkle
from ledger.blocks import Block, ChainVerifier
from ledger.checkpoint import verify_final
from ledger.errors import (
    CorruptStoreError,
    FormatError,
    StorageError,
    UsageError,
    VerificationError,
)
from ledger.genesis import Genesis, genesis_hash
from ledger.governance import GovernanceBook
from ledger.ledger_store import Ledger
from ledger.membership import Membership
from ledger.membership_chain import MembershipHistory, build_chain, verify_chain
from ledger.records import Envelope
from ledger.storage import LAYOUT, Storage, StorageConfig

FORMAT = "shadowledger/backup/v1"
DATA_FILE = "data.mdb"
MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024
_CHUNK = 1 << 20
_LEAF_BATCH = 4096
_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class BackupManifest:
    """What a backup holds; hashes are lowercase hex."""

    created: str
    head_height: int
    head_hash: str
    tree_size: int
    tree_root: str
    genesis_hash: str
    data_sha256: str
    data_bytes: int
    layout: str = LAYOUT.decode()
    format: str = FORMAT

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> BackupManifest:
        if len(data) > MAX_MANIFEST_BYTES:
            raise FormatError(f"backup manifest is {len(data)} bytes, more than allowed")
        try:
            raw = json.loads(data)
            manifest = cls(**raw) if isinstance(raw, dict) else None
        except (ValueError, TypeError) as exc:
            raise FormatError(f"backup manifest is not a {FORMAT} manifest ({exc})") from exc
        if manifest is None or manifest.format != FORMAT:
            raise FormatError(f"backup manifest is not a {FORMAT} manifest")
        manifest._check_types()
        return manifest

    def _check_types(self) -> None:
        for name in ("head_height", "tree_size", "data_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise FormatError(f"backup manifest: {name} must be a whole number")
        if self.layout != LAYOUT.decode():
            raise FormatError(f"backup holds store layout {self.layout!r}, this version"
                              f" reads {LAYOUT.decode()!r}")
        for name in ("head_hash", "tree_root", "genesis_hash", "data_sha256"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) != 64 or _not_hex(value):
                raise FormatError(f"backup manifest: {name} must be 64 hex digits")


def _not_hex(text: str) -> bool:
    return any(c not in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class RestoreResult:
    manifest: BackupManifest
    moved_aside: Path | None
    """Where the data folder's previous contents went (``--force``), if it had any."""


# --- backing up ------------------------------------------------------------------------


def create_backup(
    data_dir: Path, out: Path, now: datetime, genesis: bytes | None = None
) -> BackupManifest:
    """Snapshot the (possibly live) store in ``data_dir`` into ``out`` and check it.

    ``genesis`` (the genesis file's bytes) is needed only for a store with no block yet,
    and otherwise checked against the chain.
    """
    if out.exists():
        raise UsageError(f"{out} exists; choose a new name for the backup")
    out.parent.mkdir(parents=True, exist_ok=True)
    with _staging(out.parent, f".{out.name}.partial-") as staging:
        with Storage(data_dir, StorageConfig(readonly=True)) as live:
            live.copy_to(staging)
        manifest = _describe(staging, now, genesis)
        (staging / MANIFEST_FILE).write_bytes(manifest.to_bytes())
        for path in (staging / DATA_FILE, staging / MANIFEST_FILE, staging):
            _fsync(path)
        if out.name.endswith(".tar"):
            _write_tar(staging, out)
        else:
            staging.rename(out)
    return manifest


def _describe(staging: Path, now: datetime, genesis: bytes | None) -> BackupManifest:
    """The manifest of a fresh copy, read from the copy itself (the live store moves on)."""
    with Storage(staging, StorageConfig(readonly=True)) as storage:
        chain_id = _chain_id(storage, genesis)
        trusted = None if genesis is None else Genesis.from_bytes(genesis)
        ledger = _check_store(storage, chain_id, trusted)
        manifest = BackupManifest(
            created=now.isoformat(timespec="seconds"),
            head_height=ledger.head.height, head_hash=ledger.head.hash.hex(),
            tree_size=ledger.tree.size, tree_root=ledger.tree.root().hex(),
            genesis_hash=chain_id.hex(), data_sha256="", data_bytes=0,
        )
    (staging / "lock.mdb").unlink(missing_ok=True)
    (staging / DATA_FILE).chmod(0o600)
    digest, size = _sha256(staging / DATA_FILE)
    return replace(manifest, data_sha256=digest, data_bytes=size)


def _chain_id(storage: Storage, genesis: bytes | None) -> bytes:
    """The genesis hash: block 1's ``prev_hash``, which ``genesis`` must agree with."""
    given = None if genesis is None else genesis_hash(genesis)
    with storage.read() as txn:
        first = txn.get(_U64.pack(1), db=storage.db(b"blocks"))
    if first is None:
        if given is None:
            raise UsageError("the store holds no block yet: pass --genesis to name its network")
        return given
    prev = Block.from_bytes(bytes(first)).header.prev_hash
    if given is not None and not hmac.compare_digest(prev, given):
        raise VerificationError("the store's chain does not start from the given genesis")
    return prev


def _write_tar(staging: Path, out: Path) -> None:
    partial = out.with_name(f".{out.name}.partial")
    partial.touch(mode=0o600)
    with tarfile.open(partial, "w") as tar:
        for name in (MANIFEST_FILE, DATA_FILE):
            tar.add(staging / name, arcname=name, recursive=False)
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    partial.rename(out)


# --- checking --------------------------------------------------------------------------


def _check_store(storage: Storage, chain_id: bytes, genesis: Genesis | None) -> Ledger:
    """The ledger's own integrity: tree re-hash, every block's link, size and root.

    Opening the ``Ledger`` already checks the chain head against the tree (size, root,
    right edges) and the head block's hash."""
    ledger = Ledger(storage, chain_id)
    ledger.tree.check_all()
    network = genesis.network if genesis is not None else None
    verifier: ChainVerifier | None = None
    for block in ledger.blocks():
        if verifier is None:
            verifier = ChainVerifier(network or block.header.network, chain_id)
        verifier.add(block)
    _check_records(storage, ledger)
    if genesis is not None:
        _check_latest_checkpoint(ledger, genesis)
    return ledger


def _check_records(storage: Storage, ledger: Ledger) -> None:
    """The served copies: record ``i`` is leaf ``i`` of the tree and indexed by its id."""
    size = ledger.tree.size
    with storage.read() as txn:
        ids = txn.stat(storage.db(b"record_ids"))["entries"]
        count = txn.stat(storage.db(b"records"))["entries"]
        if ids != size or count != size:
            raise CorruptStoreError(
                f"the store holds {count} records and {ids} record ids for {size} leaves"
            )
        records = txn.cursor(db=storage.db(b"records")).iternext()
        for start in range(0, size, _LEAF_BATCH):
            wanted = [(0, i) for i in range(start, min(size, start + _LEAF_BATCH))]
            for (_, index), leaf in zip(wanted, ledger.tree.nodes(wanted, txn), strict=True):
                key, envelope = next(records)
                if bytes(key) != _U64.pack(index) or merkle.leaf_hash(envelope) != leaf:
                    raise CorruptStoreError(f"record {index} is not the tree's leaf {index}")
                rid = Envelope.from_bytes(bytes(envelope)).record_id
                if txn.get(rid, db=storage.db(b"record_ids")) != _U64.pack(index):
                    raise CorruptStoreError(f"record {index} is not indexed by its record id")


def _check_latest_checkpoint(ledger: Ledger, genesis: Genesis) -> None:
    """The latest checkpoint is final under the membership that signs its size: after
    governance changes, the one the store's own membership chain leads to from the
    genesis (the chain is verified, not trusted: docs/GOVERNANCE.md)."""
    latest = ledger.latest_checkpoint()
    if latest is None:
        return
    size, note = latest
    signers = MembershipHistory.genesis_only(genesis)
    if ledger.storage.has_db(b"governance"):
        history = GovernanceBook(ledger, Membership.from_genesis(genesis)).history()
        if history:
            signers = verify_chain(build_chain(ledger, genesis.network, history), genesis)
    membership = signers.for_size(size)
    cp = verify_final(note, membership.validator_keys, membership.threshold,
                      origin=genesis.network)
    if cp.size != size or not hmac.compare_digest(cp.root_hash, ledger.tree.root(size)):
        raise CorruptStoreError(f"the stored checkpoint for size {size} is not this tree's")


def verify_backup(source: Path, genesis: bytes | None = None) -> BackupManifest:
    """Check a backup without installing it; raise on the first problem."""
    with _staging(source.parent, f".{source.name}.verify-") as tmp:
        return _unpack_and_check(source, tmp, genesis)


def _unpack_and_check(source: Path, staging: Path, genesis: bytes | None) -> BackupManifest:
    manifest = _unpack(source, staging)
    digest, size = _sha256(staging / DATA_FILE)
    if size != manifest.data_bytes or not hmac.compare_digest(digest, manifest.data_sha256):
        raise VerificationError(
            f"{source}: {DATA_FILE} does not match the manifest's checksum (sha256 {digest},"
            f" {size} bytes; manifest says {manifest.data_sha256}, {manifest.data_bytes}"
            " bytes): the backup is damaged, use another one"
        )
    chain_id = bytes.fromhex(manifest.genesis_hash)
    trusted = None
    if genesis is not None:
        if not hmac.compare_digest(genesis_hash(genesis), chain_id):
            raise VerificationError(f"{source}: the backup is of another network's genesis")
        trusted = Genesis.from_bytes(genesis)
    with Storage(staging, StorageConfig(readonly=True)) as storage:
        ledger = _check_store(storage, chain_id, trusted)
        _check_matches(manifest, ledger, source)
    (staging / "lock.mdb").unlink(missing_ok=True)
    return manifest


def _check_matches(manifest: BackupManifest, ledger: Ledger, source: Path) -> None:
    found = (ledger.head.height, ledger.head.hash.hex(), ledger.tree.size,
             ledger.tree.root().hex())
    named = (manifest.head_height, manifest.head_hash, manifest.tree_size, manifest.tree_root)
    if found != named:
        raise VerificationError(
            f"{source}: the copy holds height {found[0]}, size {found[2]}, root {found[3]};"
            f" the manifest names height {named[0]}, size {named[2]}, root {named[3]}"
        )


def _unpack(source: Path, staging: Path) -> BackupManifest:
    """Copy the backup's two files into ``staging``; return its parsed manifest."""
    if source.is_dir():
        for name in (MANIFEST_FILE, DATA_FILE):
            if not (source / name).is_file():
                raise FormatError(f"{source}: not a backup ({name} is missing)")
            shutil.copyfile(source / name, staging / name)
    elif source.is_file():
        _untar(source, staging)
    else:
        raise StorageError(f"{source}: no such backup file or folder")
    return BackupManifest.from_bytes((staging / MANIFEST_FILE).read_bytes())


def _untar(source: Path, staging: Path) -> None:
    """Extract exactly the two known regular files; anything else refuses the archive."""
    try:
        with tarfile.open(source, "r:") as tar:
            seen = set()
            for member in tar:
                if member.name not in (MANIFEST_FILE, DATA_FILE) or not member.isfile():
                    raise FormatError(f"{source}: unexpected archive member {member.name!r}")
                if member.name == MANIFEST_FILE and member.size > MAX_MANIFEST_BYTES:
                    raise FormatError(f"{source}: the manifest is too large")
                reader = tar.extractfile(member)
                assert reader is not None  # a regular file always has contents
                with reader, (staging / member.name).open("xb") as out:
                    shutil.copyfileobj(reader, out, _CHUNK)
                seen.add(member.name)
    except (tarfile.TarError, FileExistsError) as exc:
        raise FormatError(f"{source}: not a readable backup archive ({exc})") from exc
    missing = {MANIFEST_FILE, DATA_FILE} - seen
    if missing:
        raise FormatError(f"{source}: not a backup ({', '.join(sorted(missing))} missing)")


# --- restoring -------------------------------------------------------------------------


def restore_backup(
    source: Path, data_dir: Path, now: datetime, *, force: bool = False,
    genesis: bytes | None = None,
) -> RestoreResult:
    """Verify ``source`` completely, then install it as the store in ``data_dir``."""
    _refuse_if_in_use(data_dir)
    occupied = data_dir.exists() and any(data_dir.iterdir())
    if occupied and not force:
        raise UsageError(
            f"{data_dir} is not empty; pass --force to move its contents aside and restore"
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with _staging(data_dir.parent, f".{data_dir.name}.restore-") as staging:
        manifest = _unpack_and_check(source, staging, genesis)
        (staging / MANIFEST_FILE).unlink()
        moved = None
        if occupied:
            moved = data_dir.with_name(f"{data_dir.name}.before-restore-{now:%Y%m%dT%H%M%SZ}")
            data_dir.rename(moved)
        elif data_dir.exists():
            data_dir.rmdir()
        staging.chmod(0o700)
        _fsync(staging / DATA_FILE)
        staging.rename(data_dir)
        _fsync(data_dir.parent)
    return RestoreResult(manifest, moved)


def _refuse_if_in_use(data_dir: Path) -> None:
    """Refuse while a process has the store open: LMDB holds a lock on ``lock.mdb``."""
    import fcntl

    lock = data_dir / "lock.mdb"
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        # LMDB takes a shared lock on byte 0 for as long as an environment is open.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError as exc:
        raise UsageError(
            f"{data_dir} is in use by a running process; stop the node before restoring"
        ) from exc
    finally:
        os.close(fd)  # also releases the probe's lock


# --- files -----------------------------------------------------------------------------


@contextmanager
def _staging(parent: Path, prefix: str) -> Iterator[Path]:
    """An empty folder beside the destination (same filesystem: renames are atomic)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries (so a rename survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

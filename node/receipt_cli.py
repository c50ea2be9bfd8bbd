"""`shadowledger receipt`: cut a record's receipt from a store or an export, with the
membership chain an auditor needs to verify it offline once governance changed the
membership (docs/GOVERNANCE.md).

Writes ``OUT.record`` (the envelope bytes), ``OUT.tlog-proof`` (C2SP tlog-proof@v1 against
the latest final checkpoint, or the one at ``--size``) and, when a membership change
happened at or before the receipt's size, ``OUT.membership-chain.json`` (or the file named
by ``--chain-out``, written always, an empty chain if no change happened), so that
``shadowledger audit verify-receipt OUT.tlog-proof --record OUT.record --trust genesis.json
--chain OUT.membership-chain.json`` needs nothing else.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from ledger.checkpoint import Checkpoint
from ledger.errors import UsageError
from ledger.export import MANIFEST, ExportReader
from ledger.governance import stored_transitions
from ledger.ledger_store import open_readonly
from ledger.membership_chain import CHAIN_FILE, build_chain, chain_up_to
from ledger.note import Note
from ledger.tlogproof import TlogProof


def add_receipt_command(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cut = verbs.add_parser(
        "receipt", help="write a record, its tlog-proof receipt and the membership chain "
                        "it needs, from a store or an export (offline)")
    source = cut.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="a node's LMDB folder (the node may be running)")
    source.add_argument("--export", help="a folder written by `shadowledger export`")
    which = cut.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int, help="the record's leaf index")
    which.add_argument("--record-id", help="the record id (hex)")
    cut.add_argument("--size", type=int, help="tree size of the checkpoint to prove against "
                     "(default: the latest final checkpoint)")
    cut.add_argument("--out", required=True,
                     help="path prefix: OUT.record, OUT.tlog-proof, OUT.membership-chain.json")
    cut.add_argument("--chain-out", help="write the membership chain to this file, even when "
                     "no membership change needs it")
    cut.set_defaults(handler=cmd_receipt)


def cmd_receipt(args: argparse.Namespace) -> int:
    if args.export is not None:
        if not (Path(args.export) / MANIFEST).is_file():
            raise UsageError(f"{args.export} is not a ledger export (no {MANIFEST})")
        reader = ExportReader(Path(args.export))
        index = _index(reader.index_of, reader.tree_size, args)
        receipt, record = reader.receipt(index, args.size), reader.record(index)
        checkpoint = _checkpoint(receipt)
        chain = reader.membership_chain()  # covers every size up to the export's
        sizes = [] if chain is None else [int(t["tree_size"])
                                          for t in json.loads(chain)["transitions"]]
    else:
        ledger = open_readonly(Path(args.data_dir), bytes(32))
        with ledger.storage:
            index = _index(ledger.index_of, ledger.tree.size, args)
            receipt, record = ledger.receipt(index, args.size), ledger.record(index)
            checkpoint = _checkpoint(receipt)
            transitions = stored_transitions(ledger)
            chain = chain_up_to(ledger, checkpoint.origin, transitions, checkpoint.size)
            sizes = [t.tree_size for t in transitions]
    needed = any(size < checkpoint.size for size in sizes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [_write(Path(f"{out}.record"), record), _write(Path(f"{out}.tlog-proof"), receipt)]
    if args.chain_out:
        empty = build_chain(_NO_RECORDS, checkpoint.origin, ())
        written.append(_write(Path(args.chain_out), chain or empty))
    elif needed and chain is not None:
        written.append(_write(Path(f"{out}.{CHAIN_FILE}"), chain))
    print(f"record {index} at tree size {checkpoint.size}: wrote {', '.join(written)}"
          + ("" if needed else " (no membership change before this size: the genesis "
             "alone verifies it)"))
    return 0


class _NoRecords:
    """The ledger side of an empty chain (``build_chain`` reads nothing for it)."""

    def index_of(self, rid: bytes) -> int | None:
        return None

    def record(self, index: int) -> bytes:
        raise UsageError("no records")

    def receipt(self, index: int, size: int | None = None) -> bytes:
        raise UsageError("no records")


_NO_RECORDS = _NoRecords()


def _checkpoint(receipt: bytes) -> Checkpoint:
    return Checkpoint.from_text(Note.from_bytes(TlogProof.from_bytes(receipt)
                                                .checkpoint_note).text)


def _index(index_of: Callable[[bytes], int | None], tree_size: int,
           args: argparse.Namespace) -> int:
    if args.record_id is not None:
        try:
            rid = bytes.fromhex(args.record_id)
        except ValueError as exc:
            raise UsageError(f"--record-id {args.record_id!r} is not hex") from exc
        found = index_of(rid)
        if found is None:
            raise UsageError(f"no record {args.record_id} in the ledger")
        return found
    if not 0 <= args.index < tree_size:
        raise UsageError(f"--index {args.index} is outside the ledger (0..{tree_size - 1})")
    return int(args.index)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)

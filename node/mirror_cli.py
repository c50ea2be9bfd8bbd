"""The ``mirror`` and ``reconcile`` verbs of ``shadowledger`` (registered by node/cli.py)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ledger.anchors import MIRROR_SECRET_MIN, RowKeys
from ledger.errors import UsageError
from ledger.genesis import Genesis
from node.client import LedgerClient
from node.config import ClientProfile, load_client_profile, read_signing_key
from node.mirror import Mirror, Writer
from node.mirror_state import MirrorState
from node.reconcile import KINDS, Finding, Reconciler, ReconcileReport
from node.sources import Source, TableSpec

MAX_BATCH_ROWS = 2000
SHOWN_PER_KIND = 20
"""Findings listed per kind in the human-readable report (all of them are in --json)."""


def read_secret(path: Path, create: bool) -> bytes:
    """The mirror secret: raw bytes (at least 32). ``mirror`` creates it (0600) if absent."""
    if not path.exists() and create:
        from node.localnet import write_secret

        write_secret(path, os.urandom(MIRROR_SECRET_MIN))
        print(f"created mirror secret {path} (0600): keep it with the source database;"
              " without it the anchors cannot be reconciled", file=sys.stderr)
    secret = path.read_bytes()
    if len(secret) < MIRROR_SECRET_MIN:
        raise UsageError(f"{path}: a mirror secret must be at least {MIRROR_SECRET_MIN} bytes,"
                         f" found {len(secret)}")
    return secret


def _profile(args: argparse.Namespace) -> tuple[ClientProfile, Writer]:
    profile = load_client_profile(args.profile)
    if profile.record_key is None:
        raise UsageError(f"{args.profile} has no record_key: this agency cannot sign anchors"
                         " (auditor profiles can only read)")
    network = Genesis.from_bytes(profile.genesis.read_bytes()).network
    return profile, Writer(network, profile.agency, read_signing_key(profile.record_key))


def _state_path(args: argparse.Namespace, profile: ClientProfile, must_exist: bool) -> Path:
    if args.state:
        path = Path(args.state)
    else:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.source)
        folder = profile.source.parent if profile.source is not None else Path(".")
        path = folder / f"mirror-{name}.state"
    if must_exist and not path.exists():
        raise UsageError(f"no mirror state at {path}: run `shadowledger mirror` for this source"
                         " first (or pass --state)")
    return path


def _spec(args: argparse.Namespace) -> TableSpec:
    columns = tuple(c.strip() for c in args.columns.split(",") if c.strip()) \
        if args.columns else ()
    return TableSpec(args.table, args.key_column, args.version_column, columns)


def cmd_mirror(args: argparse.Namespace) -> int:
    if not 1 <= args.batch_rows <= MAX_BATCH_ROWS:
        raise UsageError(f"--batch-rows must be 1..{MAX_BATCH_ROWS}")
    profile, writer = _profile(args)
    keys = RowKeys.derive(read_secret(Path(args.secret), create=True), args.source)
    with Source.open(args.db) as db:
        spec = db.resolve(_spec(args))  # a wrong table or column leaves no state behind
        with MirrorState(_state_path(args, profile, False)) as state, \
                LedgerClient.from_profile(args.profile) as client:
            result = Mirror(client, writer, state, keys, args.batch_rows, args.quiet).run(
                db, spec)
    if args.json:
        print(json.dumps({"source": args.source, **asdict(result)}))
        return 0
    where = ("" if result.first_index is None
             else f" (ledger indices {result.first_index}..{result.last_index})")
    rate = result.rows_read / result.seconds if result.seconds else 0.0
    print(f"mirror {args.source}: {result.rows_read} rows read, {result.rows_new} new and"
          f" {result.rows_changed} changed rows anchored in {result.records} records{where};"
          f" {result.recovered} records of an earlier run settled; {result.seconds:.1f} s"
          f" ({rate:,.0f} rows/s)")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    profile, writer = _profile(args)
    keys = RowKeys.derive(read_secret(Path(args.secret), create=False), args.source)
    evidence = Path(args.evidence)
    with Source.open(args.db) as db, MirrorState(_state_path(args, profile, True)) as state, \
            LedgerClient.from_profile(args.profile) as client:
        reconciler = Reconciler(client, writer, state, keys, args.quiet)
        report = reconciler.run(db, _spec(args), evidence)
        if args.commit:
            reconciler.commit(report)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print_report(report)
    return 0


def _describe(f: Finding) -> str:
    who = f"key {f.key}" if f.key is not None else f"key pseudonym {f.key_pseudonym.hex()[:16]}"
    parts: list[Any] = [who]
    if f.anchored_version is not None:
        parts.append(f"anchored version {f.anchored_version} in record {f.record_index}")
    if f.current_version is not None:
        parts.append(f"now version {f.current_version}" if f.kind != "state-mismatch"
                     else f"state says version {f.current_version}")
    return ", ".join(str(p) for p in parts)


TITLES = {"changed": "changed since anchoring", "deleted": "deleted from the source",
          "unanchored": "never anchored", "state-mismatch": "local state disagrees with ledger"}


def print_report(report: ReconcileReport) -> None:
    rate = report.rows_checked / report.seconds if report.seconds else 0.0
    print(f"reconcile {report.source} (table {report.table}): {report.rows_checked} rows"
          f" checked against {report.ledger_rows} anchored rows in {report.records_verified}"
          f" verified records (ledger size {report.tree_size}); {report.seconds:.1f} s"
          f" ({rate:,.0f} rows/s)")
    for kind in KINDS:
        found = report.findings[kind]
        print(f"  {TITLES[kind]}: {len(found)}")
        for f in found[:SHOWN_PER_KIND]:
            print(f"    {_describe(f)}")
        if len(found) > SHOWN_PER_KIND:
            print(f"    ... {len(found) - SHOWN_PER_KIND} more (see --json)")
    if any(report.findings[k] for k in ("changed", "deleted", "state-mismatch")):
        print(f"  evidence: {report.evidence}/record-N.envelope and record-N.tlog-proof;"
              " check with `shadowledger audit verify-receipt`")
    print(f"  findings commitment: {report.findings_commitment.hex()}")
    if report.committed_index is not None:
        print(f"  committed as Reconciliation record {report.committed_index}"
              f" (receipt {report.evidence}/reconciliation-{report.committed_index}.tlog-proof)")


def _table_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True,
                   help="source database: postgresql://user@host:port/db or a SQLite file")
    p.add_argument("--table", required=True, help="table (schema.table on PostgreSQL)")
    p.add_argument("--key-column", required=True, help="column that identifies a row")
    p.add_argument("--version-column", required=True, help="column that changes with the row")
    p.add_argument("--columns", help="comma-separated columns to commit to (default: all)")
    p.add_argument("--source", required=True,
                   help="name of the source on the ledger, e.g. population-register/persons")
    p.add_argument("--profile", required=True, help="the agency's client.toml")
    p.add_argument("--secret", required=True,
                   help="mirror secret file (>= 32 random bytes; mirror creates it if missing)")
    p.add_argument("--state", help="local state file (default: mirror-SOURCE.state beside"
                   " the profile)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_verbs(verbs: Any) -> None:
    mirror = verbs.add_parser(
        "mirror", help="anchor new and changed rows of an authoritative table (incremental)")
    _table_options(mirror)
    mirror.add_argument("--batch-rows", type=int, default=512,
                        help=f"rows per anchor record (1..{MAX_BATCH_ROWS}; also capped by"
                        " the record size limit)")
    mirror.set_defaults(handler=cmd_mirror)

    reconcile = verbs.add_parser(
        "reconcile", help="compare a table with its anchors on the ledger; report changes")
    _table_options(reconcile)
    reconcile.add_argument("--evidence", default="reconcile-evidence",
                           help="folder for the anchor records and receipts cited")
    reconcile.add_argument("--commit", action="store_true",
                           help="submit the findings as a signed Reconciliation record")
    reconcile.set_defaults(handler=cmd_reconcile)

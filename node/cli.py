"""The ``shadowledger`` command: one handler per verb, one place mapping errors to exits.

Exit codes: 0 success; 1 verification failed (the input is bad or untrusted);
2 wrong usage; 3 the input files or the store could not be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError, StorageError, UsageError, VerificationError
from ledger.genesis import Genesis, TrustRoot
from ledger.keys import SigningKey
from ledger.membership_chain import MembershipHistory, verify_chain
from ledger.receipts import verify_checkpoint_consistency, verify_receipt
from node.receipt_cli import add_receipt_command
from node.witness.cli import add_receipt_options, add_witness_commands

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _history(args: argparse.Namespace) -> MembershipHistory | None:
    """The memberships of ``--chain``, verified from the genesis given as ``--trust``."""
    if not getattr(args, "chain", None):
        return None
    data = _read(args.trust)
    if not data.lstrip().startswith(b"{"):
        raise UsageError("--chain needs the network's genesis.json as --trust")
    return verify_chain(_read(args.chain), Genesis.from_bytes(data))


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    from node.witness.cli import witness_policy_from_args

    trust = TrustRoot.load(args.trust)
    history = _history(args)
    policy = witness_policy_from_args(args)
    result = verify_receipt(_read(args.receipt), _read(args.record), trust, policy=policy,
                            history=history)
    cp = result.checkpoint
    what = ""
    if result.record is not None:
        what = f" ({result.record.kind} by {result.record.signer.name})"
    witnessed = ""
    if policy is not None and policy.required:
        witnessed = f", cosigned by witnesses {', '.join(result.witnessed_by)}"
    validators, threshold, under = len(trust.validators), trust.threshold, ""
    if history is not None:
        number = history.number_for_size(cp.size)
        membership = history.memberships[number]
        validators, threshold = len(membership.validators), membership.threshold
        under = f" of membership {number}"
    print(
        f"OK: record{what} is entry {result.index} of {cp.origin} at size {cp.size},"
        f" checkpoint signed by {len(result.signed_by)} of {validators}"
        f" validators{under} (need {threshold}){witnessed}"
    )
    return EXIT_OK


def cmd_verify_consistency(args: argparse.Namespace) -> int:
    trust = TrustRoot.load(args.trust)
    old, new = verify_checkpoint_consistency(
        _read(args.old_checkpoint), _read(args.new_checkpoint), _read(args.proof), trust,
        history=_history(args),
    )
    print(f"OK: {new.origin} at size {new.size} extends its state at size {old.size}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from node.audit_run import cmd_export as export

    return export(args)


def cmd_verify_ledger(args: argparse.Namespace) -> int:
    from node.audit_run import cmd_verify_ledger as verify

    return verify(args)


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.box:
        from node.privacy_cli import cmd_box_keygen

        return cmd_box_keygen(args)
    key = SigningKey.generate(args.name, os.urandom)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skey, vkey = out / f"{args.name}.skey", out / f"{args.name}.vkey"
    if skey.exists() and not args.force:
        print(f"error: {skey} exists; pass --force to replace it", file=sys.stderr)
        return EXIT_USAGE
    fd = os.open(skey, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.to_skey() + "\n")
    vkey.write_text(key.verifier.to_vkey() + "\n")
    print(key.verifier.to_vkey())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from node.demo import run_demo

    return run_demo(Path(args.data), records=args.records, block_size=args.block_size)


def cmd_network_init(args: argparse.Namespace) -> int:
    from node.localnet import generate

    local = generate(
        Path(args.dir), args.nodes, args.base_port, args.network,
        datetime.now(UTC), os.urandom,
        metrics_base_port=args.metrics_base_port, cert_days=args.cert_days,
    )
    print(f"network {local.network}: genesis {local.genesis_path}")
    for node in local.nodes:
        print(f"  {node.role:9} {node.agency:18} {node.address:16} {node.config_path}")
    for agency in local.agencies:
        print(f"  client    {agency.name:18} {'':16} {agency.client_profile}")
    return EXIT_OK


def cmd_genesis(args: argparse.Namespace) -> int:
    from ledger.genesis import Genesis
    from node.localnet import genesis_from_spec

    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to replace it", file=sys.stderr)
        return EXIT_USAGE
    genesis = genesis_from_spec(Path(args.agency_file), args.network, datetime.now(UTC))
    data = genesis.to_bytes()
    Genesis.from_bytes(data)
    out.write_bytes(data)
    print(
        f"{out}: network {genesis.network}, {len(genesis.agencies)} agencies,"
        f" {len(genesis.validators)} validators (quorum {genesis.threshold})"
    )
    return EXIT_OK


def cmd_tls_identity(args: argparse.Namespace) -> int:
    from node.localnet import write_secret
    from node.tls import fingerprint, generate_identity

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crt, key = out / f"{args.name}.crt", out / f"{args.name}.key"
    for path in (crt, key):
        if path.exists() and not args.force:
            print(f"error: {path} exists; pass --force to replace it", file=sys.stderr)
            return EXIT_USAGE
        path.unlink(missing_ok=True)
    cert_pem, key_pem = generate_identity(args.name, datetime.now(UTC), args.days)
    write_secret(key, key_pem)
    crt.write_bytes(cert_pem)
    print(f"{crt} (sha256 {fingerprint(cert_pem).hex()}), key {key} (0600)")
    return EXIT_OK


def cmd_node_run(args: argparse.Namespace) -> int:
    from node.daemon import run_node

    return run_node(Path(args.config))


def _genesis_bytes(args: argparse.Namespace) -> bytes | None:
    return None if args.genesis is None else _read(args.genesis)


def cmd_node_backup(args: argparse.Namespace) -> int:
    from node.backup import create_backup

    m = create_backup(Path(args.data_dir), Path(args.out), datetime.now(UTC),
                      _genesis_bytes(args))
    print(f"{args.out}: height {m.head_height}, {m.tree_size} records, root {m.tree_root},"
          f" {m.data_bytes} bytes (sha256 {m.data_sha256})")
    return EXIT_OK


def cmd_node_verify_backup(args: argparse.Namespace) -> int:
    from node.backup import verify_backup

    m = verify_backup(Path(args.backup), _genesis_bytes(args))
    print(f"OK: {args.backup}: height {m.head_height}, {m.tree_size} records, root"
          f" {m.tree_root}, taken {m.created}")
    return EXIT_OK


def cmd_node_restore(args: argparse.Namespace) -> int:
    from node.backup import restore_backup

    result = restore_backup(Path(args.source), Path(args.data_dir), datetime.now(UTC),
                            force=args.force, genesis=_genesis_bytes(args))
    m = result.manifest
    if result.moved_aside is not None:
        print(f"previous contents of {args.data_dir} moved to {result.moved_aside}")
    print(f"restored {args.data_dir}: height {m.head_height}, {m.tree_size} records, root"
          f" {m.tree_root} (taken {m.created}); start the node: it catches up from its peers")
    return EXIT_OK


def cmd_node_health(args: argparse.Namespace) -> int:
    import grpc

    from node.config import load_config
    from node.health import check_health

    try:
        status = check_health(load_config(args.config), args.timeout)
    except grpc.RpcError as exc:
        print(f"FAILED: node unreachable: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return EXIT_INVALID
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_INVALID


def cmd_network_local(args: argparse.Namespace) -> int:
    from node.daemon import run_local

    return run_local(Path(args.dir), args.nodes, args.base_port, args.metrics_base_port,
                     args.network)


def cmd_explorer(args: argparse.Namespace) -> int:
    from node.explorer.cli import serve_explorer

    return serve_explorer(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shadowledger",
        description="Permissioned shadow ledger for cross-agency data sharing.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    audit = verbs.add_parser("audit", help="offline verification for auditors (files only)")
    checks = audit.add_subparsers(dest="check", required=True, metavar="CHECK")
    receipt = checks.add_parser(
        "verify-receipt", help="check a tlog-proof receipt for a record against trusted keys"
    )
    receipt.add_argument("receipt", help="C2SP tlog-proof@v1 file")
    receipt.add_argument("--record", required=True, help="the record's envelope bytes")
    receipt.add_argument("--trust", required=True, help="genesis.json or a file of vkeys")
    receipt.add_argument("--chain", help="membership chain file (docs/GOVERNANCE.md): needed "
                         "once governance changed validators or record keys")
    receipt.set_defaults(handler=cmd_verify_receipt)
    add_receipt_options(receipt)
    cons = checks.add_parser(
        "verify-consistency", help="check that a newer checkpoint extends an older one"
    )
    cons.add_argument("old_checkpoint", help="signed checkpoint note (older)")
    cons.add_argument("new_checkpoint", help="signed checkpoint note (newer)")
    cons.add_argument("--proof", required=True, help="shadowledger/consistency-proof/v1 file")
    cons.add_argument("--trust", required=True, help="genesis.json or a file of vkeys")
    cons.add_argument("--chain", help="membership chain file (docs/GOVERNANCE.md): needed "
                      "once governance changed the validators")
    cons.set_defaults(handler=cmd_verify_consistency)
    whole = checks.add_parser(
        "verify-ledger", help="re-verify a whole exported ledger (records, blocks, certificates,"
        " checkpoints, tiles)"
    )
    whole.add_argument("dir", help="folder written by `shadowledger export`")
    whole.add_argument("--trust", required=True, help="the network's genesis.json")
    whole.add_argument("--chain", help="membership chain file (docs/GOVERNANCE.md): needed "
                       "once governance changed the membership")
    whole.add_argument("--jobs", type=int, default=1,
                       help="processes checking record signatures (default 1)")
    whole.add_argument("--json", action="store_true", help="machine-readable summary")
    whole.add_argument("--progress", action="store_true",
                       help="draw the progress bar even when stderr is not a terminal")
    whole.set_defaults(handler=cmd_verify_ledger)

    export = verbs.add_parser(
        "export", help="write the ledger as a static C2SP tlog-tiles tree (or extend one)"
    )
    export.add_argument("--data-dir", required=True,
                        help="the node's LMDB folder (node.data_dir); the node may be running")
    export.add_argument("--out", required=True, help="export folder (created or extended)")
    export.set_defaults(handler=cmd_export)

    add_receipt_command(verbs)

    keygen = verbs.add_parser("keygen", help="generate an Ed25519 signed-note key pair")
    keygen.add_argument("name", help="key name, e.g. the agency or validator name")
    keygen.add_argument("--out", default=".", help="folder for NAME.skey and NAME.vkey")
    keygen.add_argument("--force", action="store_true", help="overwrite an existing key")
    keygen.add_argument("--box", action="store_true", help="an X25519 box key pair for "
                        "off-ledger delivery instead (NAME.boxkey, NAME.boxpub)")
    keygen.set_defaults(handler=cmd_keygen)

    demo = verbs.add_parser(
        "demo", help="build a local ledger, issue a receipt and verify it (single process)"
    )
    demo.add_argument("--data", default="var/demo", help="folder for keys, genesis and LMDB")
    demo.add_argument("--records", type=int, default=2000, help="records to commit")
    demo.add_argument("--block-size", type=int, default=250, help="records per block")
    demo.set_defaults(handler=cmd_demo)

    network = verbs.add_parser("network", help="set up a local test network")
    network_verbs = network.add_subparsers(dest="network_verb", required=True, metavar="ACTION")
    init = network_verbs.add_parser(
        "init", help="write keys, certificates, genesis and configs for a local network"
    )
    init.add_argument("--nodes", type=int, default=4, help="validator agencies (4 = f of 1)")
    init.add_argument("--dir", required=True, help="new, empty folder for the network")
    init.add_argument("--base-port", type=int, default=7100, help="gRPC port of node 0")
    init.add_argument("--metrics-base-port", type=int, default=9100, help="metrics of node 0")
    init.add_argument("--network", default="local.shadow-ledger.example/v1",
                      help="network name (checkpoint origin)")
    init.add_argument("--cert-days", type=int, default=365, help="TLS certificate validity")
    init.set_defaults(handler=cmd_network_init)

    local = network_verbs.add_parser(
        "local", help="generate a local network (first time) and run all its nodes until Ctrl-C"
    )
    local.add_argument("--nodes", type=int, default=4, help="validator agencies (4 = f of 1)")
    local.add_argument("--dir", default="var/localnet", help="folder of the network")
    local.add_argument("--base-port", type=int, default=7100, help="gRPC port of node 0")
    local.add_argument("--metrics-base-port", type=int, default=9100, help="metrics of node 0")
    local.add_argument("--network", default="local.shadow-ledger.example/v1",
                       help="network name (checkpoint origin)")
    local.set_defaults(handler=cmd_network_local)

    node_cmd = verbs.add_parser("node", help="run a node daemon")
    node_verbs = node_cmd.add_subparsers(dest="node_verb", required=True, metavar="ACTION")
    run = node_verbs.add_parser("run", help="serve until SIGTERM / Ctrl-C (see docs/CONFIG.md)")
    run.add_argument("--config", required=True, help="node.toml")
    run.set_defaults(handler=cmd_node_run)
    _add_node_ops(node_verbs)

    genesis = verbs.add_parser(
        "genesis", help="build a genesis.json from the agencies' public keys and certificates"
    )
    genesis.add_argument("--network", required=True, help="network name (checkpoint origin)")
    genesis.add_argument("--agency-file", required=True,
                         help="shadowledger/genesis-spec/v1 JSON (see docs/CONFIG.md)")
    genesis.add_argument("--out", default="genesis.json", help="where to write the genesis")
    genesis.add_argument("--force", action="store_true", help="overwrite an existing file")
    genesis.set_defaults(handler=cmd_genesis)

    tls_id = verbs.add_parser(
        "tls-identity", help="generate a self-signed P-256 TLS certificate to pin in the genesis"
    )
    tls_id.add_argument("name", help="node.<agency> or client.<agency>")
    tls_id.add_argument("--out", default=".", help="folder for NAME.crt and NAME.key")
    tls_id.add_argument("--days", type=int, default=365, help="validity in days")
    tls_id.add_argument("--force", action="store_true", help="overwrite existing files")
    tls_id.set_defaults(handler=cmd_tls_identity)

    explorer = verbs.add_parser(
        "explorer", help="serve the read-only web explorer over a ledger (until Ctrl-C)"
    )
    explorer.add_argument("dir", nargs="?", help="a static export (shadowledger export)")
    explorer.add_argument("--data-dir", help="a node's LMDB data folder, opened read-only")
    explorer.add_argument("--genesis", help="the network's genesis.json")
    explorer.add_argument("--listen", default="127.0.0.1:8101", help="host:port (0 = any free)")
    explorer.set_defaults(handler=cmd_explorer)

    add_witness_commands(verbs, checks)  # witness init|run, audit verify-split-view

    from node.privacy_cli import add_commands

    add_commands(verbs)

    from node.agreement_cli import add_agreement_parser

    add_agreement_parser(verbs)

    from node.governance_cli import add_governance_parser

    add_governance_parser(verbs)

    from node.mirror_cli import add_verbs as add_mirror_verbs

    add_mirror_verbs(verbs)
    return parser


def _add_node_ops(node_verbs: Any) -> None:
    """Operations on a node's store and process: backup, restore, health (docs/OPERATIONS.md)."""
    backup = node_verbs.add_parser(
        "backup", help="online, consistent snapshot of a (running) node's store"
    )
    backup.add_argument("--data-dir", required=True, help="the node's data folder")
    backup.add_argument("--out", required=True,
                        help="new folder, or a file ending in .tar, for the backup")
    backup.add_argument("--genesis", help="genesis.json: checked against the chain; needed"
                        " only for a store without any block")
    backup.set_defaults(handler=cmd_node_backup)
    check = node_verbs.add_parser("verify-backup", help="check a backup without restoring it")
    check.add_argument("backup", help="backup folder or .tar file")
    check.add_argument("--genesis", help="genesis.json: also check network and checkpoints")
    check.set_defaults(handler=cmd_node_verify_backup)
    restore = node_verbs.add_parser(
        "restore", help="verify a backup and install it as a stopped node's store"
    )
    restore.add_argument("--from", dest="source", required=True, help="backup folder or .tar")
    restore.add_argument("--data-dir", required=True, help="the node's data folder")
    restore.add_argument("--genesis", help="genesis.json: also check network and checkpoints")
    restore.add_argument("--force", action="store_true",
                         help="move a non-empty data folder aside (DIR.before-restore-TIME)")
    restore.set_defaults(handler=cmd_node_restore)
    health = node_verbs.add_parser(
        "health", help="gRPC health check of the node on this machine (exit 0 if SERVING)"
    )
    health.add_argument("--config", required=True, help="node.toml")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds")
    health.set_defaults(handler=cmd_node_health)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except VerificationError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (OSError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_IO
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

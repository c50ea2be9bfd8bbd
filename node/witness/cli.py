"""The witness verbs of ``shadowledger``: ``witness init|run``, ``audit verify-split-view``,
and the witness-quorum options of ``audit verify-receipt``. Kept apart from node/cli.py,
which only calls ``add_witness_commands`` and ``witness_policy_from_args``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ledger.errors import UsageError
from ledger.genesis import Genesis
from ledger.splitview import verify_split_view
from ledger.witness_policy import WitnessPolicy, parse_policy

EXIT_OK = 0


def cmd_witness_init(args: argparse.Namespace) -> int:
    from node.witness.server import init_witness

    network = Genesis.from_bytes(Path(args.genesis).read_bytes()).network
    config, vkey = init_witness(Path(args.dir), args.name, Path(args.genesis), args.listen,
                                os.urandom)
    print(f"{config}: witness {args.name} for {network}")
    print(f"vkey (add it to the genesis 'witnesses' and to the nodes' [[witnesses]]):\n{vkey}")
    return EXIT_OK


def cmd_witness_run(args: argparse.Namespace) -> int:
    from node.witness.server import run_witness

    return run_witness(Path(args.config))


def cmd_verify_split_view(args: argparse.Namespace) -> int:
    from ledger.genesis import TrustRoot

    verdict = verify_split_view(Path(args.evidence).read_bytes(), TrustRoot.load(args.trust))
    if not verdict.conclusive:
        from ledger.errors import VerificationError

        raise VerificationError(verdict.describe())
    print(f"CONFIRMED: {verdict.describe()}")
    return EXIT_OK


def witness_policy_from_args(args: argparse.Namespace) -> WitnessPolicy | None:
    """``--policy FILE`` (tlog-policy) or ``--witness-quorum K`` over the genesis witnesses."""
    if args.policy and args.witness_quorum is not None:
        raise UsageError("give either --policy or --witness-quorum, not both")
    if args.policy:
        return parse_policy(Path(args.policy).read_bytes())
    if args.witness_quorum is None:
        return None
    data = Path(args.trust).read_bytes()
    if not data.lstrip().startswith(b"{"):
        raise UsageError("--witness-quorum takes the witnesses from a genesis; with bare"
                         " validator keys, name the witnesses in a --policy file")
    return WitnessPolicy.k_of(Genesis.from_bytes(data).witnesses, args.witness_quorum)


def add_receipt_options(receipt: argparse.ArgumentParser) -> None:
    receipt.add_argument("--witness-quorum", type=int, metavar="K",
                         help="also require K cosignatures from the genesis witnesses")
    receipt.add_argument("--policy", help="C2SP tlog-policy file naming witnesses and quorum")


def add_witness_commands(verbs: Any, checks: Any) -> None:
    split = checks.add_parser(
        "verify-split-view", help="confirm a witness's split-view evidence against the genesis")
    split.add_argument("evidence", help="shadowledger/split-view-evidence/v1 file")
    split.add_argument("--trust", required=True, help="genesis.json or a file of vkeys")
    split.set_defaults(handler=cmd_verify_split_view)

    witness = verbs.add_parser("witness", help="run a C2SP tlog-witness that cosigns checkpoints")
    actions = witness.add_subparsers(dest="witness_verb", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="create a witness key and witness.toml")
    init.add_argument("--dir", required=True, help="folder for witness.toml and its key")
    init.add_argument("--name", required=True, help="witness key name, e.g. audit-office/w1")
    init.add_argument("--genesis", required=True, help="genesis.json of the network to follow")
    init.add_argument("--listen", default="127.0.0.1:7380", help="HTTP address (host:port)")
    init.set_defaults(handler=cmd_witness_init)
    run = actions.add_parser("run", help="serve POST /add-checkpoint until SIGTERM / Ctrl-C")
    run.add_argument("--config", required=True, help="witness.toml")
    run.set_defaults(handler=cmd_witness_run)

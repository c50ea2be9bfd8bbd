"""``shadowledger share | deliver send|fetch|erase | report subject`` and ``keygen --box``.

One handler per verb, calling only ``node.privacy_client``; errors reach the one
mapping in ``node/cli.py`` (an ``ApiError`` prints its gRPC status and the node's reason).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ledger.errors import UsageError
from node.privacy_client import PrivacyClient

EXIT_OK = 0


def _hex_id(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise UsageError(f"{text!r} is not a record id (64 hex digits)")
    return value


def _client(args: argparse.Namespace) -> PrivacyClient:
    node = getattr(args, "node", None)
    server_name = getattr(args, "server_name", None)
    openings = Path(args.openings) if getattr(args, "openings", None) else None
    return PrivacyClient.from_profile(args.profile, address=node, server_name=server_name,
                                      openings=openings)


def cmd_share(args: argparse.Namespace) -> int:
    payload = Path(args.payload).read_bytes()
    with _client(args) as client:
        shared = client.share(agreement_id=_hex_id(args.agreement), recipient=args.recipient,
                              dataset=args.dataset, purpose=args.purpose,
                              subject_id=args.subject, payload=payload)
    assert client.openings is not None
    print(f"event {shared.ack.record_id.hex()} committed at index {shared.ack.index}; "
          f"opening (salt + payload) kept in {client.openings.folder}")
    return EXIT_OK


def cmd_deliver_send(args: argparse.Namespace) -> int:
    event_id = _hex_id(args.event)
    if not args.server_name:  # the recipient's node is node.<recipient>, from the event
        from node.client import LedgerClient

        with LedgerClient.from_profile(args.profile) as own:
            event = own.get_record(record_id=event_id).record
        args.server_name = f"node.{event.body.sharing_event.recipient}"
    with _client(args) as client:
        index = client.deliver(event_id)
    print(f"payload of event {index} sealed to the recipient's box key and stored at "
          f"{args.node}")
    return EXIT_OK


def cmd_deliver_fetch(args: argparse.Namespace) -> int:
    event_id = _hex_id(args.event)
    with _client(args) as client:
        opened = client.fetch(event_id)
    assert client.openings is not None
    salt_path, payload_path = client.openings.paths(event_id)
    print(f"OK: payload of event {opened.event.index} from {opened.provider} "
          f"({len(opened.payload)} bytes) opens its on-ledger commitment; "
          f"written to {payload_path} (salt {salt_path})")
    return EXIT_OK


def cmd_deliver_erase(args: argparse.Namespace) -> int:
    event_id = _hex_id(args.event)
    with _client(args) as client:
        erased, removed = client.erase(event_id, at_node=not args.local_only)
    where = "" if args.local_only else f"{erased} sealed bytes at the node, "
    print(f"erased {where}{removed} local files; the ledger still verifies, the commitment "
          "is now unlinkable")
    return EXIT_OK


def cmd_report_subject(args: argparse.Namespace) -> int:
    from node.subject_report import write_report

    out = Path(args.out)
    with _client(args) as client:
        events = client.subject_events(args.subject, verify_complete=args.verify_complete)
        write_report(out, client.agency, args.subject, events, client.client.genesis.network,
                     args.verify_complete)
    print(f"{len(events)} sharing events about the subject; report in {out / 'report.txt'}, "
          f"{out / 'report.json'}, receipts in {out / 'receipts'}")
    return EXIT_OK


def cmd_box_keygen(args: argparse.Namespace) -> int:
    from node.delivery import write_box_key_files

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skey = out / f"{args.name}.boxkey"
    if skey.exists():
        if not args.force:
            raise UsageError(f"{skey} exists; pass --force to replace it")
        skey.unlink()
    _, pub = write_box_key_files(out, args.name)
    print(pub.read_text().strip())
    return EXIT_OK


def _profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, help="the agency's client.toml")
    parser.add_argument("--openings", help="folder of salts and payloads (default: "
                        "openings/ beside the profile)")


def add_commands(verbs: Any) -> None:
    """Register the privacy verbs on the ``shadowledger`` parser."""
    share = verbs.add_parser("share", help="commit a sharing event (pseudonym + commitment)")
    _profile(share)
    share.add_argument("--agreement", required=True, help="record id (hex) of the agreement")
    share.add_argument("--recipient", required=True, help="recipient agency")
    share.add_argument("--dataset", required=True)
    share.add_argument("--purpose", required=True)
    share.add_argument("--subject", required=True, help="subject identifier (never on the "
                       "ledger: pseudonymised with the profile's pseudonym_key)")
    share.add_argument("--payload", required=True, help="file whose bytes are committed")
    share.set_defaults(handler=cmd_share)

    deliver = verbs.add_parser("deliver", help="off-ledger delivery of sealed payloads")
    actions = deliver.add_subparsers(dest="deliver_verb", required=True, metavar="ACTION")
    send = actions.add_parser("send", help="seal an event's payload to the recipient and "
                              "store it at the recipient's node")
    _profile(send)
    send.add_argument("--event", required=True, help="record id (hex) of the sharing event")
    send.add_argument("--node", required=True, help="host:port of the recipient's node")
    send.add_argument("--server-name", help="its TLS name (default node.<recipient>)")
    send.set_defaults(handler=cmd_deliver_send)
    fetch = actions.add_parser("fetch", help="fetch, open and check a payload delivered to "
                               "this agency")
    _profile(fetch)
    fetch.add_argument("--event", required=True, help="record id (hex) of the sharing event")
    fetch.set_defaults(handler=cmd_deliver_fetch)
    erase = actions.add_parser("erase", help="erase a payload at this agency's node and in "
                               "the local openings (crypto-shredding)")
    _profile(erase)
    erase.add_argument("--event", required=True, help="record id (hex) of the sharing event")
    erase.add_argument("--local-only", action="store_true",
                       help="only the local opening (e.g. the provider's copy)")
    erase.set_defaults(handler=cmd_deliver_erase)

    report = verbs.add_parser("report", help="reports from the ledger")
    kinds = report.add_subparsers(dest="report_verb", required=True, metavar="KIND")
    subject = kinds.add_parser("subject", help="every sharing event about a data subject, "
                               "with receipts an auditor verifies")
    _profile(subject)
    subject.add_argument("--subject", required=True, help="subject identifier")
    subject.add_argument("--out", required=True, help="folder for report.txt/.json, receipts/")
    subject.add_argument("--verify-complete", action="store_true",
                         help="also scan every record up to a final checkpoint to prove the "
                         "node's index omitted nothing (reads the whole ledger)")
    subject.set_defaults(handler=cmd_report_subject)

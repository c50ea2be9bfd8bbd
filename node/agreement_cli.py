"""`shadowledger agreement draft|countersign|submit|revoke|list`: agreements between agencies.

The draft file passes between the two agencies: the drafter writes it, the other party
reads the terms and countersigns it with its own record key (``--profile`` of its own
client), the drafter submits it. Format: UTF-8 JSON
    {"format": "shadowledger/agreement-draft/v1", "body": BASE64, "terms": TEXT,
     "countersigned": BOOL}
where ``body`` is the deterministic ``RecordBody`` both parties sign and ``terms`` is an
informative summary (the body is what counts: every command re-reads the terms from it).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from ledger.agreements import Agreement, check_terms
from ledger.errors import FormatError, UsageError
from ledger.keys import SigningKey
from ledger.policy import short_id, when
from proto import ledger_pb2

DRAFT_FORMAT = "shadowledger/agreement-draft/v1"
MAX_DRAFT_BYTES = 256 * 1024


def _profile_key(profile_path: str) -> SigningKey:
    from node.config import load_client_profile, read_signing_key

    profile = load_client_profile(profile_path)
    if profile.record_key is None:
        raise UsageError(f"{profile_path}: agency {profile.agency} has no record key "
                         "(an auditor cannot sign agreements)")
    return read_signing_key(profile.record_key)


def _client(profile_path: str) -> Any:
    from node.client import LedgerClient

    return LedgerClient.from_profile(profile_path)


def _parse_time(text: str) -> int:
    """'now', Unix milliseconds, or ISO 8601 (UTC if no offset) -> Unix milliseconds."""
    if text == "now":
        return int(datetime.now(UTC).timestamp() * 1000)
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"time {text!r} is not 'now', Unix ms or ISO 8601") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def write_draft(path: Path, body: ledger_pb2.RecordBody) -> None:
    a = body.agreement
    doc = {
        "format": DRAFT_FORMAT,
        "body": base64.b64encode(body.SerializeToString(deterministic=True)).decode(),
        "terms": describe(body),
        "countersigned": bool(a.countersignature),
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def read_draft(path: Path) -> ledger_pb2.RecordBody:
    data = path.read_bytes()
    if len(data) > MAX_DRAFT_BYTES:
        raise FormatError(f"{path}: {len(data)} bytes, over {MAX_DRAFT_BYTES} for a draft")
    try:
        doc = json.loads(data)
        if doc.get("format") != DRAFT_FORMAT:
            raise FormatError(f"{path}: format is {doc.get('format')!r}, want {DRAFT_FORMAT!r}")
        body = ledger_pb2.RecordBody()
        body.ParseFromString(base64.b64decode(doc["body"], validate=True))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error,
            DecodeError) as exc:
        raise FormatError(f"{path}: not an agreement draft ({exc})") from exc
    if body.WhichOneof("kind") != "agreement":
        raise FormatError(f"{path}: the draft's record is not an agreement")
    check_terms(body)
    return body


def describe(body: ledger_pb2.RecordBody) -> str:
    a = Agreement.from_body(b"", body)
    return (f"{a.provider} -> {a.recipient}, datasets {', '.join(sorted(a.datasets))}, "
            f"purpose {a.purpose!r}, legal basis {a.legal_basis!r}, "
            f"valid {when(a.valid_from_ms)} .. {when(a.valid_until_ms)}, "
            f"drafted by {body.agency}")


def cmd_draft(args: argparse.Namespace) -> int:
    key = _profile_key(args.profile)
    start = _parse_time(args.valid_from)
    if (args.valid_until is None) == (args.days is None):
        raise UsageError("give exactly one of --valid-until and --days")
    until = (_parse_time(args.valid_until) if args.valid_until is not None
             else start + int(timedelta(days=args.days).total_seconds() * 1000))
    out = Path(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to replace it")
    with _client(args.profile) as client:
        body = client.draft_agreement(
            key, provider=args.provider, recipient=args.recipient, datasets=args.dataset,
            purpose=args.purpose, legal_basis=args.legal_basis, valid_from_ms=start,
            valid_until_ms=until)
    write_draft(out, body)
    other = args.recipient if key.name == args.provider else args.provider
    print(f"draft {out}: {describe(body)}")
    print(f"next: {other} runs `shadowledger agreement countersign {out} --profile ...`")
    return 0


def cmd_countersign(args: argparse.Namespace) -> int:
    key = _profile_key(args.profile)
    path = Path(args.draft)
    body = read_draft(path)
    from node.client import LedgerClient

    signed = LedgerClient.countersign_agreement(body, key)
    out = Path(args.out) if args.out else path
    write_draft(out, signed)
    print(f"countersigned by {key.name}: {describe(signed)}")
    print(f"next: {signed.agency} runs `shadowledger agreement submit {out} --profile ...`")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    key = _profile_key(args.profile)
    body = read_draft(Path(args.draft))
    if body.agency != key.name:
        raise UsageError(f"the draft was written by {body.agency}: only it can submit it "
                         f"(this profile is {key.name})")
    with _client(args.profile) as client:
        ack = client.submit_agreement(body, key)
    print(f"agreement {ack.record_id.hex()} committed at index {ack.index}"
          f" (block {ack.height})")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    key = _profile_key(args.profile)
    try:
        agreement_id = bytes.fromhex(args.agreement_id)
    except ValueError as exc:
        raise UsageError(f"agreement id {args.agreement_id!r} is not hex") from exc
    with _client(args.profile) as client:
        ack = client.revoke_agreement(key, agreement_id, args.reason)
    print(f"agreement {args.agreement_id} revoked: revocation at index {ack.index}"
          f" (block {ack.height})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args.profile) as client:
        response = client.agreements(args.agency or "")
    print(f"{len(response.agreements)} agreements at height {response.height},"
          f" status at {when(response.time_ms)}")
    for a in response.agreements:
        status = a.status + (f" (at {when(a.revoked_at_ms)})" if a.revoked else "")
        print(f"{a.agreement_id.hex()}  {status}")
        print(f"    {a.provider} -> {a.recipient}  datasets {', '.join(a.datasets)}"
              f"  purpose {a.purpose!r}  basis {a.legal_basis!r}")
        print(f"    valid {when(a.valid_from_ms)} .. {when(a.valid_until_ms)}"
              f"  [{short_id(a.agreement_id)}]")
    return 0


def add_agreement_parser(verbs: Any) -> None:
    """Register ``shadowledger agreement ...`` on the CLI's sub-parsers."""
    agreement = verbs.add_parser("agreement", help="sharing agreements between two agencies")
    actions = agreement.add_subparsers(dest="agreement_verb", required=True, metavar="ACTION")
    profile_help = "client.toml of the agency acting (its record key signs)"

    draft = actions.add_parser("draft", help="write the terms to a draft file for the other"
                               " party to countersign")
    draft.add_argument("--profile", required=True, help=profile_help)
    draft.add_argument("--provider", required=True, help="agency that provides the data")
    draft.add_argument("--recipient", required=True, help="agency that receives it")
    draft.add_argument("--dataset", required=True, action="append",
                       help="dataset covered (repeat for several)")
    draft.add_argument("--purpose", required=True, help="the one purpose covered")
    draft.add_argument("--legal-basis", required=True, help="e.g. the statute and section")
    draft.add_argument("--valid-from", default="now", help="'now', Unix ms or ISO 8601")
    draft.add_argument("--valid-until", help="'now', Unix ms or ISO 8601 (or use --days)")
    draft.add_argument("--days", type=float, help="validity from --valid-from, in days")
    draft.add_argument("--out", required=True, help="draft file to write")
    draft.add_argument("--force", action="store_true", help="overwrite an existing file")
    draft.set_defaults(handler=cmd_draft)

    counter = actions.add_parser("countersign", help="consent to a draft as the other party")
    counter.add_argument("draft", help="draft file written by `agreement draft`")
    counter.add_argument("--profile", required=True, help=profile_help)
    counter.add_argument("--out", help="where to write the countersigned draft (default:"
                         " in place)")
    counter.set_defaults(handler=cmd_countersign)

    submit = actions.add_parser("submit", help="sign a countersigned draft and commit it")
    submit.add_argument("draft", help="countersigned draft file")
    submit.add_argument("--profile", required=True, help=profile_help + " (the drafter)")
    submit.set_defaults(handler=cmd_submit)

    revoke = actions.add_parser("revoke", help="revoke an agreement (a party only)")
    revoke.add_argument("agreement_id", help="the agreement's id (hex, from `list`)")
    revoke.add_argument("--profile", required=True, help=profile_help)
    revoke.add_argument("--reason", default="", help="why (at most 128 characters)")
    revoke.set_defaults(handler=cmd_revoke)

    list_ = actions.add_parser("list", help="agreements on the ledger and their status")
    list_.add_argument("--profile", required=True, help="any client.toml (auditors too)")
    list_.add_argument("--agency", help="only agreements this agency is a party to")
    list_.set_defaults(handler=cmd_list)


"""The data-subject report: what was shared about one person, with evidence.

Written to a folder: ``report.txt`` (for people), ``report.json`` (for programs) and
``receipts/`` holding, per event and per agreement, the exact record envelope
(``*.record``) and its C2SP tlog-proof@v1 receipt (``*.tlog-proof``), each checkable
offline with ``shadowledger audit verify-receipt RECEIPT --record RECORD --trust
genesis.json``. The pseudonym key never leaves the agency; the report names the subject
as the caller gave it (the report is for the subject, kept off the ledger).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.client import VerifiedRecord
from node.privacy_client import SubjectEvent

FORMAT = "shadowledger/subject-report/v1"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _write_evidence(folder: Path, stem: str, record: VerifiedRecord) -> dict[str, str]:
    (folder / f"{stem}.record").write_bytes(record.record.envelope.raw)
    (folder / f"{stem}.tlog-proof").write_bytes(record.receipt)
    return {"record": f"receipts/{stem}.record", "receipt": f"receipts/{stem}.tlog-proof"}


def _entry(item: SubjectEvent, receipts: Path) -> dict[str, Any]:
    record = item.event.record
    e, terms = record.body.sharing_event, item.terms
    return {
        "index": item.event.index,
        "record_id": record.record_id.hex(),
        "provider": e.provider,
        "recipient": e.recipient,
        "dataset": e.dataset,
        "purpose": e.purpose,
        "legal_basis": terms.legal_basis,
        "time": _iso(record.body.created_ms),
        "time_source": "provider's signed clock (created_ms)",
        "agreement": {
            "index": item.agreement.index,
            "record_id": terms.agreement_id.hex(),
            "valid_from": _iso(terms.valid_from_ms),
            "valid_until": _iso(terms.valid_until_ms),
            "evidence": _write_evidence(receipts, f"agreement-{item.agreement.index}",
                                        item.agreement),
        },
        "payload_commitment": e.payload_commitment.hex(),
        "payload_size": e.payload_size,
        "evidence": _write_evidence(receipts, f"event-{item.event.index}", item.event),
    }


def write_report(folder: Path, agency: str, subject: str, events: list[SubjectEvent],
                 network: str, complete: bool) -> dict[str, Any]:
    """Write report.txt, report.json and receipts/ under ``folder``; return the JSON."""
    receipts = folder / "receipts"
    receipts.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT,
        "network": network,
        "agency": agency,
        "subject": subject,
        "completeness": ("verified: every record up to a final checkpoint was scanned"
                         if complete else "from the node's subject index (not proven)"),
        "events": [_entry(item, receipts) for item in events],
    }
    (folder / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    (folder / "report.txt").write_text(_text(doc))
    return doc


def _text(doc: dict[str, Any]) -> str:
    lines = [
        f"Data-subject report of {doc['agency']} on {doc['network']}",
        f"Subject: {doc['subject']}",
        f"Sharing events found: {len(doc['events'])} ({doc['completeness']})",
        "",
    ]
    for n, e in enumerate(doc["events"], start=1):
        a = e["agreement"]
        lines += [
            f"{n}. {e['time']}  {e['provider']} -> {e['recipient']}",
            f"   dataset {e['dataset']}, purpose {e['purpose']}",
            f"   legal basis: {e['legal_basis']} (agreement {a['record_id'][:16]}, "
            f"valid {a['valid_from']} .. {a['valid_until']})",
            f"   ledger entry {e['index']}, record {e['record_id'][:16]}",
            f"   evidence: {e['evidence']['receipt']} with {e['evidence']['record']}",
            "",
        ]
    lines += [
        "Each receipt proves its record is in the ledger under a checkpoint signed by a",
        "quorum of the validators. Check one offline, trusting only the genesis:",
        "  shadowledger audit verify-receipt receipts/event-N.tlog-proof "
        "--record receipts/event-N.record --trust genesis.json",
    ]
    return "\n".join(lines) + "\n"

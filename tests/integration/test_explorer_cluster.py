"""The explorer served by a node of a running 4-validator cluster (real processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ledger.genesis import TrustRoot
from ledger.keys import SigningKey
from ledger.receipts import verify_receipt
from node.client import Ack
from node.config import load_client_profile, read_signing_key
from tests.explorer.http import fetch, get_json
from tests.integration.cluster import Cluster, free_port_range, running_cluster

VALIDATORS = ["tax-agency", "social-security", "health-insurance", "statistics-office"]


def _key(cluster: Cluster, agency: str) -> SigningKey:
    profile = load_client_profile(cluster.profile_path(agency))
    assert profile.record_key is not None
    return read_signing_key(profile.record_key)


def _wait_for(url: str, size: int, timeout: float = 60.0) -> None:
    """Until the observer holds a checkpoint covering ``size`` records (it follows)."""
    deadline = time.monotonic() + timeout
    while True:
        response = fetch(url, "/api/checkpoint")
        if response.status == 200 and response.json()["size"] >= size:
            return
        assert time.monotonic() < deadline, f"explorer did not reach size {size}"
        time.sleep(0.2)


def test_explorer_on_the_auditors_observer_node(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "net", start=[]) as cluster:
        port = free_port_range(1)
        observer = cluster.node("audit-office")
        with observer.config_path.open("a") as f:
            f.write(f'\n[explorer]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
        everyone = [n.agency for n in cluster.net.nodes]
        for agency in everyone:
            cluster.start(agency)
        cluster.wait_ready(everyone)
        url = f"http://127.0.0.1:{port}/"

        tax, social = _key(cluster, "tax-agency"), _key(cluster, "social-security")
        now = int(time.time() * 1000)
        with cluster.client("tax-agency") as client:
            draft = client.draft_agreement(
                tax, provider="tax-agency", recipient="social-security",
                datasets=["income-records"], purpose="audit", legal_basis="Act 12 s.3",
                valid_from_ms=now - 60_000, valid_until_ms=now + 86_400_000)
            acks = [client.submit_agreement(client.countersign_agreement(draft, social), tax)]
            events = [client.sharing_event(
                tax, agreement_id=acks[0].record_id, provider="tax-agency",
                recipient="social-security", dataset="income-records", purpose="audit",
                payload_commitment=os.urandom(32), payload_size=10) for _ in range(5)]
            for result in client.submit_many(events):
                assert isinstance(result, Ack), result
                acks.append(result)
        last = max(a.index for a in acks)
        _wait_for(url, last + 1)

        cp = get_json(url, "/api/checkpoint")
        assert cp["final"] is True and len(cp["signed_by"]) >= 3
        assert set(cp["signed_by"]) <= set(VALIDATORS)

        record = get_json(url, f"/api/records/{acks[1].index}")
        assert record["kind"] == "sharing_event" and record["signature"] == "valid"
        assert record["height"] == acks[1].height
        block = get_json(url, f"/api/blocks/{acks[1].height}?limit=500")
        assert acks[1].index in [r["index"] for r in block["records"]]
        assert block["certificate"]["ok"] is True

        receipt = fetch(url, f"/api/records/{acks[1].index}/receipt").body
        envelope = fetch(url, f"/api/records/{acks[1].index}/envelope").body
        result = verify_receipt(receipt, envelope, TrustRoot.load(cluster.net.genesis_path))
        assert result.index == acks[1].index

        agreements = get_json(url, "/api/agreements")["agreements"]
        assert [(a["provider"], a["recipient"], a["legal_basis"], a["state"])
                for a in agreements] == [("tax-agency", "social-security", "Act 12 s.3",
                                          "active")]
        per_day = get_json(url, "/api/charts/records-per-day?days=2")["series"]
        counts = {s["name"]: sum(s["counts"]) for s in per_day}  # the test may span midnight
        assert counts == {"tax-agency->social-security": 5}
        latency = get_json(url, "/api/charts/commit-latency")
        assert latency["points"] and all(p["interval_ms"] >= 0 for p in latency["points"])
        assert fetch(url, "/api/status", method="POST").status == 405

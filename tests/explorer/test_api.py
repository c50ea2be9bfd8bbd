"""The explorer's JSON API and pages over a real ledger built in-process."""

from __future__ import annotations

import itertools
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.ledger_store import Ledger
from node.cli import main as cli_main
from node.explorer.server import ExplorerServer
from node.explorer.views import Explorer
from tests.explorer.http import fetch, get_json
from tests.explorer.ledger_fixture import BLOCK_TIMES, Built, build, commit, sharing

VALIDATORS = [f"validator.{a}" for a in
              ("tax-agency", "social-security", "health-insurance", "statistics-office")]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Built, Ledger, str]]:
    built, ledger = build(tmp_path_factory.mktemp("explorer") / "net")
    server = ExplorerServer(Explorer(ledger, built.genesis_bytes), "127.0.0.1:0").start()
    try:
        yield built, ledger, server.url
    finally:
        server.stop()
        ledger.storage.close()


def test_latest_checkpoint_names_who_signed(served: tuple[Built, Ledger, str]) -> None:
    built, ledger, url = served
    cp = get_json(url, "/api/checkpoint")
    assert cp["size"] == len(built.envelopes) == ledger.tree.size
    assert cp["root"] == ledger.tree.root().hex()
    assert cp["final"] is True and cp["threshold"] == 3
    assert cp["signed_by"] == VALIDATORS[:3] and cp["not_signed_by"] == VALIDATORS[3:]
    assert [s["verified"] for s in cp["signatures"]] == [True, True, True]
    note = fetch(url, "/api/checkpoint/note")
    assert note.body == ledger.latest_checkpoint()[1]  # type: ignore[index]
    assert "attachment" in note.headers["Content-Disposition"]


def test_blocks_are_paged_newest_first(served: tuple[Built, Ledger, str]) -> None:
    _built, _, url = served
    first = get_json(url, "/api/blocks?limit=2")
    assert [b["height"] for b in first["blocks"]] == [5, 4] and first["next_before"] == 4
    second = get_json(url, "/api/blocks?limit=2&before=4")
    assert [b["height"] for b in second["blocks"]] == [3, 2] and second["next_before"] == 2
    last = get_json(url, "/api/blocks?limit=2&before=2")
    assert [b["height"] for b in last["blocks"]] == [1] and last["next_before"] is None
    assert [b["time_ms"] for b in first["blocks"]] == [BLOCK_TIMES[4], BLOCK_TIMES[3]]
    assert first["blocks"][0]["proposer"] == VALIDATORS[1]


def test_a_block_lists_its_records_and_certificates(served: tuple[Built, Ledger, str]) -> None:
    built, ledger, url = served
    block = get_json(url, "/api/blocks/3")
    indexes = [i for i, h in enumerate(built.heights) if h == 3]
    assert [r["index"] for r in block["records"]] == indexes
    assert [r["record_id"] for r in block["records"]] == [
        built.envelopes[i].record_id.hex() for i in indexes]
    assert [r["kind"] for r in block["records"]] == ["sharing_event"] * 4 + ["anchor"] * 2
    assert block["hash"] == ledger.block(3).hash.hex()
    assert block["checkpoint"]["final"] is True and block["certificate"] is None
    window = get_json(url, "/api/blocks/3?offset=4&limit=1")
    assert [r["index"] for r in window["records"]] == [indexes[4]]


def test_a_record_is_decoded_with_hex_bytes(served: tuple[Built, Ledger, str]) -> None:
    built, _, url = served
    index = 2  # the first sharing event
    env = built.envelopes[index]
    record = get_json(url, f"/api/records/{index}")
    assert record["kind"] == "sharing_event" and record["agency"] == "tax-agency"
    assert record["signature"] == "valid" and record["signer"] == "tax-agency"
    assert record["height"] == 1 and record["record_id"] == env.record_id.hex()
    fields = record["fields"]
    assert fields["provider"] == "tax-agency" and fields["recipient"] == "social-security"
    assert re.fullmatch("[0-9a-f]{64}", fields["payload_commitment"])
    assert fields["payload_size"] == 321
    by_id = get_json(url, f"/api/records/by-id/{env.record_id.hex()}")
    assert by_id["index"] == index
    agreement = get_json(url, "/api/records/0")
    assert agreement["fields"]["datasets"] == ["income-records", "addresses"]


def test_downloaded_receipt_passes_verify_receipt(served: tuple[Built, Ledger, str],
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    built, _, url = served
    index = 9
    receipt = fetch(url, f"/api/records/{index}/receipt")
    envelope = fetch(url, f"/api/records/{index}/envelope")
    assert receipt.status == envelope.status == 200
    assert f'filename="record-{index}.tlog-proof"' in receipt.headers["Content-Disposition"]
    assert envelope.body == built.envelopes[index].raw
    (tmp_path / "r.tlog-proof").write_bytes(receipt.body)
    (tmp_path / "r.bin").write_bytes(envelope.body)
    code = cli_main(["audit", "verify-receipt", str(tmp_path / "r.tlog-proof"), "--record",
                     str(tmp_path / "r.bin"), "--trust", str(built.folder / "genesis.json")])
    assert code == 0
    assert f"entry {index} of" in capsys.readouterr().out


def test_agreements_show_parties_window_and_revocation(served: tuple[Built, Ledger, str]
                                                       ) -> None:
    built, _, url = served
    doc = get_json(url, "/api/agreements")
    assert doc["total"] == 2
    by_id = {a["record_id"]: a for a in doc["agreements"]}
    keep, gone = by_id[built.agreement_id.hex()], by_id[built.revoked_id.hex()]
    assert (keep["provider"], keep["recipient"]) == ("tax-agency", "social-security")
    assert keep["datasets"] == ["income-records", "addresses"]
    assert keep["legal_basis"] == "Social Code s.67" and keep["purpose"] == "benefit-eligibility"
    assert keep["valid_from_ms"] == BLOCK_TIMES[0] and keep["revoked"] is False
    assert gone["revoked"] is True and gone["state"] == "revoked"
    assert gone["revoked_reason"] == "purpose fulfilled"
    assert gone["revoked_by"] == "health-insurance"
    assert gone["revoked_index"] == built.heights.index(4)


def test_records_per_day_per_pair(served: tuple[Built, Ledger, str]) -> None:
    _, _, url = served
    doc = get_json(url, "/api/charts/records-per-day?days=4")
    assert len(doc["days"]) == 4 and doc["days"][-1] > doc["days"][0]
    series = {s["name"]: s["counts"] for s in doc["series"]}
    assert series == {
        "tax-agency->social-security": [0, 4, 0, 0],
        "social-security->health-insurance": [0, 1, 4, 0],
        "health-insurance->tax-agency": [0, 0, 0, 5],
        "anchor: statistics-office": [0, 1, 1, 0],
        "anchor: tax-agency": [0, 0, 1, 0],
    }


def test_commit_latency_is_the_block_time_delta(served: tuple[Built, Ledger, str]) -> None:
    _, _, url = served
    doc = get_json(url, "/api/charts/commit-latency")
    deltas = [b - a for a, b in itertools.pairwise(BLOCK_TIMES)]
    assert [p["interval_ms"] for p in doc["points"]] == deltas
    assert [p["height"] for p in doc["points"]] == [2, 3, 4, 5]


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/api/blocks/99", 404, "no block at height 99: heights run from 1 to"),
    ("/api/blocks/0", 404, "no block at height 0"),
    ("/api/records/1000", 404, "no record at index 1000"),
    ("/api/records/by-id/abcd", 400, "a record id is 64 hex digits, got 4"),
    ("/api/records/by-id/" + "zz" * 32, 400, "record id is not hex"),
    ("/api/records/by-id/" + "00" * 32, 404, "no record with id"),
    ("/api/blocks?limit=0", 400, "limit must be between 1 and 500, got 0"),
    ("/api/blocks?limit=-3", 400, "limit must be a non-negative integer, got '-3'"),
    ("/api/blocks?before=1", 400, "before must be between 2 and"),
    ("/api/charts/records-per-day?days=9999", 400, "days must be between 1 and 366"),
    ("/api/blocks?" + "&".join(f"a{i}=1" for i in range(9)), 400, "more than 8 query"),
    ("/api/nothing", 404, "no page '/api/nothing'"),
    ("/x" * 1100, 414, "URL longer than 2048 characters"),
])
def test_bad_requests_get_clear_errors(served: tuple[Built, Ledger, str], path: str,
                                       status: int, message: str) -> None:
    response = fetch(served[2], path)
    assert response.status == status
    assert message in response.json()["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_only_reads_are_allowed(served: tuple[Built, Ledger, str], method: str) -> None:
    response = fetch(served[2], "/api/status", method=method)
    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"
    assert "read-only" in response.json()["error"]


def test_pages_carry_strict_security_headers_and_no_outside_assets(
        served: tuple[Built, Ledger, str]) -> None:
    url = served[2]
    for path in ("/", "/app.js", "/style.css", "/api/status", "/api/blocks/1"):
        response = fetch(url, path)
        assert response.status == 200, path
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Server"].startswith("shadowledger-explorer")
    html = fetch(url, "/").body.decode()
    assert '<script src="/app.js" defer></script>' in html
    assert not re.search(r"<script>|<style>| style=| on[a-z]+=", html)
    for asset in ("/", "/app.js", "/style.css"):
        body = fetch(url, asset).body.replace(b'"http://www.w3.org/2000/svg"', b"")  # a name
        assert not re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", body)
    assert b"innerHTML" not in fetch(url, "/app.js").body


def test_concurrent_requests_are_bounded(served: tuple[Built, Ledger, str]) -> None:
    built, ledger, _ = served
    server = ExplorerServer(Explorer(ledger, built.genesis_bytes), "127.0.0.1:0",
                            max_concurrent=1).start()
    try:
        request = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as first:
            first.sendall(request)  # keep-alive: this connection holds the only slot
            assert first.recv(65536).startswith(b"HTTP/1.1 200")
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as second:
                second.sendall(request)
                reply = second.recv(65536)
        assert reply.startswith(b"HTTP/1.1 503") and b"busy" in reply
    finally:
        server.stop()


def test_new_blocks_show_up(tmp_path: Path) -> None:
    built, ledger = build(tmp_path / "net")
    server = ExplorerServer(Explorer(ledger, built.genesis_bytes), "127.0.0.1:0").start()
    try:
        assert get_json(server.url, "/api/charts/records-per-day?days=1")["series"][0][
            "counts"] == [5]
        commit(built, ledger, [sharing(built.net, "health-insurance", "tax-agency")],
               BLOCK_TIMES[-1] + 1000)
        doc = get_json(server.url, "/api/charts/records-per-day?days=1")
        assert doc["series"] == [{"name": "health-insurance->tax-agency", "counts": [6]}]
        assert get_json(server.url, "/api/blocks?limit=1")["blocks"][0]["height"] == 6
        assert get_json(server.url, "/api/checkpoint")["size"] == len(built.envelopes)
    finally:
        server.stop()
        ledger.storage.close()

"""The explorer across membership changes: checkpoints, commit certificates and record
signatures checked with the membership in force (replayed from the ledger's governance
records, for a live store and for an export alike), the membership API and its chain
download, and the membership page in a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.export import ExportReader
from ledger.export_writer import export_ledger
from ledger.membership_chain import verify_chain
from node.explorer.server import ExplorerServer
from node.explorer.views import Explorer
from node.ledger_audit import verify_export
from tests.explorer import browser
from tests.explorer.http import fetch, get_json
from tests.ledger.governance_helpers import KEYS, TAX_NEXT, propose, with_approvals
from tests.ledger.governance_ledger import (
    M1,
    M2,
    M3,
    GovLedger,
    agency_anchor,
    build_governed,
    tax_anchor,
)
from tests.ledger.policy_helpers import GENESIS


@pytest.fixture(scope="module", params=["store", "export"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[GovLedger, str]]:
    folder = tmp_path_factory.mktemp("governed-explorer")
    g = build_governed(folder / "store")
    g.commit([agency_anchor("social"), tax_anchor(KEYS["tax"])])  # tax rotated that key out
    reader = g.ledger if request.param == "store" else None
    if reader is None:
        export_ledger(g.ledger, folder / "export")
    server = ExplorerServer(Explorer(reader or ExportReader(folder / "export"),
                                     GENESIS.to_bytes()), "127.0.0.1:0").start()
    try:
        yield g, server.url
    finally:
        server.stop()
        g.close()


def test_membership_lists_the_transitions(served: tuple[GovLedger, str]) -> None:
    _, url = served
    m = get_json(url, "/api/membership")
    assert (m["number"], m["hash"], m["approvals"], m["pending"]) == (3, M3.hash.hex(), 2, [])
    assert [(t["number"], t["height"], t["tree_size"], t["membership"])
            for t in m["transitions"]] == [(1, 3, 7, M1.hash.hex()), (2, 6, 11, M2.hash.hex()),
                                           (3, 8, 16, M3.hash.hex())]
    first, second, third = m["transitions"]
    assert first["validators_added"] == ["validator.tax-next"]
    assert first["validators_removed"] == ["validator.audit"]
    assert first["approvers"] == ["tax", "social", "health"] and first["proposal_index"] == 2
    assert second["record_keys_added"] == [f"tax+{TAX_NEXT.verifier.key_id.hex()}"]
    assert second["record_keys_removed"] == [f"tax+{KEYS['tax'].verifier.key_id.hex()}"]
    assert (third["validators_added"], third["validators_removed"]) == (
        ["validator.extra"], ["validator.social"])
    status = get_json(url, "/api/status")
    assert status["membership"] == 3 and len(status["validators"]) == 4


def test_checkpoints_and_certificates_use_the_membership_in_force(
        served: tuple[GovLedger, str]) -> None:
    g, url = served
    cp = get_json(url, "/api/checkpoint")
    assert cp["final"] is True and cp["membership"] == 3 and cp["size"] == g.ledger.tree.size
    # V5 (named by its agency, health) signs; validator.social, removed by M3, does not
    assert cp["signed_by"] == ["validator.tax", "validator.health", "validator.tax-next",
                               "health"]
    for height, number in ((2, 0), (3, 0), (4, 1), (8, 2), (9, 3), (11, 3)):
        block = get_json(url, f"/api/blocks/{height}")
        assert block["certificate"]["ok"] is True, (height, block["certificate"])
        assert block["certificate"]["membership"] == number
        assert block["checkpoint"]["final"] is True, (height, block["checkpoint"])
    # the adopting block's checkpoint is signed by the old membership, the next by the new
    assert get_json(url, "/api/blocks/3")["checkpoint"]["membership"] == 0
    assert get_json(url, "/api/blocks/4")["checkpoint"]["membership"] == 1


def test_record_signatures_use_the_keys_in_force(served: tuple[GovLedger, str]) -> None:
    g, url = served
    old = get_json(url, "/api/records/0")  # tax's first key, in force then
    assert (old["signature"], old["membership"], old["signer"]) == ("valid", 0, "tax")
    new = get_json(url, "/api/records/11")  # tax's next key, in force from record 11
    assert (new["signature"], new["membership"]) == ("valid", 2)
    stale = get_json(url, f"/api/records/{g.ledger.tree.size - 1}")  # the rotated-out key
    assert stale["signature"].startswith("INVALID: ") and stale["membership"] == 3
    assert stale["signature"].endswith("(not a record key of membership 3, in force here)")


def test_membership_chain_download_verifies_from_the_genesis(
        served: tuple[GovLedger, str]) -> None:
    g, url = served
    reply = fetch(url, "/api/membership/chain")
    assert 'filename="membership-chain.json"' in reply.headers["Content-Disposition"]
    assert reply.body == g.chain()
    history = verify_chain(reply.body, GENESIS)
    assert history.memberships[1:] == (M1, M2, M3)


def test_membership_page_in_a_browser(served: tuple[GovLedger, str]) -> None:
    browser.chromium()
    _, url = served
    dom = browser.dump_dom(url + "#/membership")
    assert 'data-ready="1"' in dom and "Membership in force: 3" in dom
    assert dom.count("data-membership=") == 3
    assert "+validator.tax-next \u2212validator.audit" in dom  # a minus sign
    assert 'href="/api/membership/chain"' in dom


def test_pending_proposals_are_listed_until_the_block_that_passes_their_expiry(
        tmp_path: Path) -> None:
    g = build_governed(tmp_path / "store")
    try:
        explorer = Explorer(g.ledger, GENESIS.to_bytes())
        p = propose("tax", with_approvals(M3, 3), base=M3, expires_ms=g.time_ms + 250,
                    key=TAX_NEXT, summary="three approvals again")
        g.commit([p])
        pending = explorer.membership()["pending"]
        assert [(x["proposal_id"], x["author"], x["summary"], x["approvers"], x["needed"])
                for x in pending] == [(p.record_id.hex(), "tax", "three approvals again",
                                       ["tax"], 2)]
        g.commit([agency_anchor("social")])  # 100 ms before the expiry: still pending
        assert len(explorer.membership()["pending"]) == 1
        g.commit([agency_anchor("social")])  # this block's time passes it
        assert explorer.membership()["pending"] == []
        assert g.book.governance.pending() == []  # the node pruned it at the same block
        export_ledger(g.ledger, tmp_path / "export")
    finally:
        g.close()
    report = verify_export(ExportReader(tmp_path / "export"), GENESIS.to_bytes())
    assert report.ok and len(report.transitions) == 3, report.failure

"""Sharing agreements enforced by a real network: 4 validators and an observer on 127.0.0.1.

Three validators and the auditor's observer start at once; the fourth joins late (by
state sync) at the end, and one validator restarts, so that every node's policy state can
be compared after each way of reaching it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ledger.records import sign_record
from node.cli import main
from node.client import Ack, ApiError, LedgerClient
from tests.integration.cluster import Cluster, running_cluster

TAX, SOCIAL, HEALTH, STATS, AUDIT = ("tax-agency", "social-security", "health-insurance",
                                     "statistics-office", "audit-office")
FIRST = [TAX, SOCIAL, HEALTH, AUDIT]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("policy") / "net", start=FIRST) as c:
        yield c


def _now_ms() -> int:
    return int(time.time() * 1000)


def _agree(cluster: Cluster, provider: str, recipient: str, until_ms: int,
           datasets: tuple[str, ...] = ("income",), purpose: str = "benefits") -> bytes:
    """Draft by the provider, countersigned by the recipient, submitted by the provider."""
    with cluster.client(provider) as client:
        draft = client.draft_agreement(
            cluster.key(provider), provider=provider, recipient=recipient, datasets=datasets,
            purpose=purpose, legal_basis="Data Sharing Act s.4",
            valid_from_ms=_now_ms() - 60_000, valid_until_ms=until_ms)
        consent = LedgerClient.countersign_agreement(draft, cluster.key(recipient))
        return client.submit_agreement(consent, cluster.key(provider)).record_id


def _share(cluster: Cluster, author: str, agreement_id: bytes, provider: str = TAX,
           recipient: str = SOCIAL, dataset: str = "income", purpose: str = "benefits") -> Ack:
    with cluster.client(author) as client:
        return client.share(cluster.key(author), agreement_id=agreement_id, provider=provider,
                            recipient=recipient, dataset=dataset, purpose=purpose,
                            payload_commitment=b"\x11" * 32, payload_size=10)


def _refused(cluster: Cluster, code: grpc.StatusCode, author: str, agreement_id: bytes,
             **event: str) -> str:
    with pytest.raises(ApiError) as err:
        _share(cluster, author, agreement_id, **event)
    assert err.value.code == code, err.value
    return err.value.message


def test_uncovered_event_is_refused_naming_what_is_missing(cluster: Cluster) -> None:
    message = _refused(cluster, grpc.StatusCode.FAILED_PRECONDITION, TAX, b"\x07" * 32)
    assert "no active agreement covers tax-agency -> social-security, dataset 'income'," \
           " purpose 'benefits' at 20" in message
    assert "agreement 0707070707070707 is not on the ledger" in message
    message = _refused(cluster, grpc.StatusCode.FAILED_PRECONDITION, TAX, b"")
    assert "names no agreement" in message
    with cluster.client(TAX) as client:  # an agreement without the other party's consent
        draft = client.draft_agreement(
            cluster.key(TAX), provider=TAX, recipient=SOCIAL, datasets=["income"],
            purpose="benefits", legal_basis="none", valid_from_ms=0, valid_until_ms=1)
        with pytest.raises(ApiError) as err:
            client.submit(sign_record(draft, cluster.key(TAX)))
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "social-security's countersignature on the agreement does not verify" \
        in err.value.message


def test_committed_agreement_lets_its_events_commit(cluster: Cluster) -> None:
    aid = _agree(cluster, TAX, SOCIAL, _now_ms() + 3_600_000, datasets=("income", "household"))
    acks = [_share(cluster, TAX, aid), _share(cluster, SOCIAL, aid, dataset="household")]
    with cluster.client(SOCIAL) as client:  # many at once through a stream, all committed
        events = [client.sharing_event(cluster.key(SOCIAL), agreement_id=aid, provider=TAX,
                                       recipient=SOCIAL, dataset="income", purpose="benefits")
                  for _ in range(20)]
        results = list(client.submit_many(events))
    assert all(isinstance(r, Ack) for r in results), results
    with cluster.client(TAX) as client:
        stored = client.get_record(index=acks[0].index).record.body.sharing_event
    assert stored.agreement_id == aid
    message = _refused(cluster, grpc.StatusCode.FAILED_PRECONDITION, TAX, aid,
                       purpose="fraud-prevention")
    assert f"agreement {aid.hex()[:16]} covers only tax-agency -> social-security" in message
    # Health is no party: it may not record the event in their place.
    message = _refused(cluster, grpc.StatusCode.PERMISSION_DENIED, HEALTH, aid)
    assert "only the provider or the recipient may" in message


def test_short_agreement_expires_by_itself(cluster: Cluster) -> None:
    until = _now_ms() + 4_000
    aid = _agree(cluster, HEALTH, TAX, until, datasets=("claims",), purpose="audit")
    _share(cluster, HEALTH, aid, provider=HEALTH, recipient=TAX, dataset="claims",
           purpose="audit")
    time.sleep(max(0.0, (until - _now_ms()) / 1000) + 0.2)  # no record ends it: time does
    message = _refused(cluster, grpc.StatusCode.FAILED_PRECONDITION, HEALTH, aid,
                       provider=HEALTH, recipient=TAX, dataset="claims", purpose="audit")
    assert f"agreement {aid.hex()[:16]} expired at" in message
    with cluster.client(AUDIT, via=TAX) as auditor:
        listed = {a.agreement_id: a for a in auditor.agreements().agreements}
    assert listed[aid].status == "expired"


def test_revocation_stops_events(cluster: Cluster) -> None:
    aid = _agree(cluster, SOCIAL, HEALTH, _now_ms() + 3_600_000, datasets=("benefits-paid",),
                 purpose="fraud-prevention")
    event = {"provider": SOCIAL, "recipient": HEALTH, "dataset": "benefits-paid",
             "purpose": "fraud-prevention"}
    _share(cluster, SOCIAL, aid, **event)
    with cluster.client(TAX) as client, pytest.raises(ApiError) as err:
        client.revoke_agreement(cluster.key(TAX), aid, "not ours")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    with cluster.client(HEALTH) as client:
        client.revoke_agreement(cluster.key(HEALTH), aid, "pilot ended")
    message = _refused(cluster, grpc.StatusCode.FAILED_PRECONDITION, SOCIAL, aid, **event)
    assert f"agreement {aid.hex()[:16]} was revoked at" in message
    with cluster.client(SOCIAL) as client:
        listed = {a.agreement_id: a for a in client.agreements(SOCIAL).agreements}
    assert listed[aid].revoked and listed[aid].status == "revoked"


def test_auditor_reads_but_may_not_write(cluster: Cluster) -> None:
    with cluster.client(AUDIT, via=SOCIAL) as auditor:
        with pytest.raises(ApiError) as err:
            auditor.share(cluster.key(TAX), agreement_id=b"\x01" * 32, provider=TAX,
                          recipient=SOCIAL, dataset="income", purpose="benefits")
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "audit-office is an auditor: it may read, not write" in err.value.message
        assert auditor.agreements().agreements  # it reads every agreement


def test_cli_drafts_countersigns_submits_lists_and_revokes(
        cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    draft = tmp_path / "tax-stats.agreement"
    tax, stats = str(cluster.profile_path(TAX)), str(cluster.profile_path(STATS))
    assert main(["agreement", "draft", "--profile", tax, "--provider", TAX, "--recipient",
                 STATS, "--dataset", "income", "--purpose", "official-statistics",
                 "--legal-basis", "Statistics Act s.9", "--days", "30",
                 "--out", str(draft)]) == 0
    assert main(["agreement", "submit", str(draft), "--profile", tax]) == 1  # no consent yet
    assert "countersignature" in capsys.readouterr().err
    assert main(["agreement", "countersign", str(draft), "--profile", stats]) == 0
    assert main(["agreement", "submit", str(draft), "--profile", tax]) == 0
    out = capsys.readouterr().out
    aid = out.split("agreement ")[-1].split()[0]
    assert len(bytes.fromhex(aid)) == 32
    # The late joiner's node is not up yet: list and revoke through the tax agency's node.
    assert main(["agreement", "list", "--profile", tax, "--agency", STATS]) == 0
    listing = capsys.readouterr().out
    assert f"{aid}  active" in listing and "official-statistics" in listing
    assert main(["agreement", "revoke", aid, "--profile", tax, "--reason", "done"]) == 0
    assert main(["agreement", "list", "--profile", tax]) == 0
    assert f"{aid}  revoked (at 20" in capsys.readouterr().out
    assert main(["agreement", "revoke", aid, "--profile", tax]) == 2
    assert "FAILED_PRECONDITION" in capsys.readouterr().err


@pytest.mark.slow  # timing-dependent: see the comment
def test_event_left_out_when_its_agreement_expires_while_it_waits(cluster: Cluster) -> None:
    # Flaky in `make test` (CI, 2026-11-23): the event was acknowledged. A block proposed
    # before the agreement's end (with that earlier block time) can be decided after it,
    # which the policy rightly accepts, so this outcome depends on timing. Run with
    # `pytest -m slow`; tests/node/test_app_policy.py covers leaving expired events out.
    until = _now_ms() + 20_000  # room for the commit and a slow stop on a busy machine
    aid = _agree(cluster, TAX, SOCIAL, until, purpose="pilot")
    assert cluster.stop(HEALTH) == 0  # 2 of 4 validators left: no block can commit
    assert _now_ms() < until - 2_000, "the machine is too slow for this test's margin"
    outcome: dict[str, object] = {}

    def submit() -> None:  # admitted now (covered at the node's clock), then it waits
        try:
            with cluster.client(TAX, timeout=120) as client:
                outcome["ack"] = client.share(cluster.key(TAX), agreement_id=aid, provider=TAX,
                                              recipient=SOCIAL, dataset="income",
                                              purpose="pilot")
        except ApiError as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=submit)
    waiter.start()
    time.sleep(max(0.0, (until - _now_ms()) / 1000) + 0.5)
    assert not outcome, f"answered before the agreement ended: {outcome}"  # so it waited
    cluster.start(HEALTH)  # blocks resume, all after the agreement's end
    cluster.wait_ready([HEALTH])
    waiter.join(timeout=150)
    error = outcome.get("error")
    assert isinstance(error, ApiError), outcome
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "left out of a block" in error.message
    assert f"agreement {aid.hex()[:16]} expired at" in error.message


def _policy_state(cluster: Cluster, via: str) -> tuple[int, list[tuple[bytes, bool, int]]]:
    with cluster.client(TAX if via != TAX else SOCIAL, via=via) as client:
        response = client.agreements()
    return response.height, [(a.agreement_id, a.revoked, a.revoked_at_ms)
                             for a in response.agreements]


def test_restart_and_late_joiner_reach_the_same_policy_state(cluster: Cluster) -> None:
    aid = _agree(cluster, TAX, HEALTH, _now_ms() + 3_600_000)
    late = cluster.node(STATS).config_path
    late.write_text(late.read_text().replace("[consensus]\n", "[consensus]\nstate_sync_gap = 1\n"))
    assert cluster.stop(HEALTH) == 0
    cluster.start(STATS)  # joins late: state sync (signatures vouched by certificates)
    cluster.start(HEALTH)  # restarts from its own store
    cluster.wait_ready([STATS, HEALTH])
    ack = _share(cluster, HEALTH, aid, provider=TAX, recipient=HEALTH)
    everyone = [TAX, SOCIAL, HEALTH, STATS, AUDIT]
    cluster.wait_same_root(everyone, ack.checkpoint.size)
    # Empty blocks keep coming, so nodes asked one after the other answer at different
    # heights: every node must be past the event's block and hold the same agreements.
    deadline = time.monotonic() + 30
    while True:
        states = {via: _policy_state(cluster, via) for via in everyone}
        same = len({repr(agreements) for _, agreements in states.values()}) == 1
        if same or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert same, states
    assert all(height >= ack.height for height, _ in states.values()), states
    agreements = states[TAX][1]
    assert len(agreements) >= 5
    assert any(revoked for _, revoked, _ in agreements)
    # The catch-up logs once it has handed over to consensus (``restart_at_head`` on the
    # consensus thread), which can come after the node already serves the synced state.
    log, deadline = late.parent / "node.log", time.monotonic() + 30
    while '"state_sync": true' not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert '"state_sync": true' in log.read_text()
    # And the late joiner enforces it like everyone: a revoked agreement stays revoked.
    revoked = next(a for a, r, _ in agreements if r)
    with cluster.client(STATS) as client, pytest.raises(ApiError) as err:
        client.share(cluster.key(STATS), agreement_id=revoked, provider=TAX, recipient=STATS,
                     dataset="income", purpose="official-statistics")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "was revoked at" in err.value.message

"""Auditing across membership changes: `audit verify-ledger --chain` over an export of a
ledger that went through a validator-key rotation, a record-key rotation and a validator
swap; what fails without the chain, with a wrong chain, with a certificate by a removed
validator set or a record signed by a rotated-out key; and `verify-receipt` /
`verify-consistency --chain` as users run them (exit codes, one FAILED: line)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.export import ExportReader
from ledger.export_writer import export_ledger
from ledger.membership_chain import CHAIN_FILE, verify_chain
from ledger.receipts import ConsistencyProof
from node.audit_run import pooled
from node.backup import create_backup, verify_backup
from node.cli import main
from node.ledger_audit import AuditReport, verify_export
from tests.ledger.governance_helpers import (
    KEYS,
    M0,
    TAX_NEXT,
    approve,
    new_key,
    propose,
    rotate_tax,
)
from tests.ledger.governance_ledger import (
    M1,
    M2,
    M3,
    V5,
    GovLedger,
    agency_anchor,
    build_governed,
    tax_anchor,
)
from tests.ledger.policy_helpers import GENESIS, VALIDATOR_KEYS

M4 = rotate_tax(M3, new_key("tax", 212))


class Exported:
    def __init__(self, folder: Path, tail: Callable[[GovLedger], None] | None = None) -> None:
        self.folder = folder
        g = build_governed(folder / "store")
        try:
            if tail is not None:
                tail(g)
            export_ledger(g.ledger, folder / "export")
            self.chain = folder / "chain.json"
            self.chain.write_bytes(g.chain())
            self.size = g.ledger.tree.size
            (folder / "receipt").write_bytes(g.ledger.receipt(0, self.size))
            (folder / "record").write_bytes(g.ledger.record(0))
            (folder / "old.checkpoint").write_bytes(g.ledger.checkpoint(2) or b"")
            (folder / "new.checkpoint").write_bytes(g.ledger.checkpoint(self.size) or b"")
            proof = ConsistencyProof(2, self.size, tuple(g.ledger.consistency_proof(2,
                                                                                   self.size)))
            (folder / "consistency.proof").write_bytes(proof.to_bytes())
        finally:
            g.close()
        self.genesis = folder / "genesis.json"
        self.genesis.write_bytes(GENESIS.to_bytes())

    def verify(self, chain: bytes | None = None, jobs: int = 1) -> AuditReport:
        return verify_export(ExportReader(self.folder / "export"), GENESIS.to_bytes(),
                             chain=chain, map_chunks=map if jobs == 1 else pooled(jobs))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    yield Exported(tmp_path_factory.mktemp("governed"))


def test_verify_ledger_across_membership_changes_with_the_chain(exported: Exported) -> None:
    report = exported.verify(exported.chain.read_bytes())
    assert report.ok, report.failure
    assert (report.blocks, report.certificates, report.records) == (10, 10, exported.size)
    assert report.per_kind["governance"] == 9 and report.anomaly_count == 0
    pooled_report = exported.verify(exported.chain.read_bytes(), jobs=2)
    assert pooled_report.ok, pooled_report.failure


@pytest.mark.parametrize("jobs", [1, 2])
def test_verify_ledger_replays_the_memberships_from_the_genesis_alone(
        exported: Exported, jobs: int) -> None:
    """No chain: the adoptions replayed from the blocks give the memberships in force (the
    record checks resume with each adoption's new keys), the same the chain would."""
    report = exported.verify(jobs=jobs)
    assert report.ok, report.failure
    assert (report.blocks, report.certificates, report.records) == (10, 10, exported.size)
    assert report.checkpoints == 11 and report.anomaly_count == 0
    got = [(t.number, t.from_height, t.tree_size, t.membership, t.approvers)
           for t in report.transitions]
    assert got == [(1, 4, 7, M1, ("tax", "social", "health")),
                   (2, 7, 11, M2, ("social", "health", "tax")),
                   (3, 9, 16, M3, ("tax", "social", "health"))]
    chained = exported.verify(exported.chain.read_bytes())
    assert chained.transitions == report.transitions
    assert (chained.records, chained.per_kind, chained.entry_bundles) == (
        report.records, report.per_kind, report.entry_bundles)


def test_verify_ledger_with_a_truncated_chain_names_the_missing_adoption(
        exported: Exported) -> None:
    doc = json.loads(exported.chain.read_bytes())
    doc["transitions"].pop()
    report = exported.verify(json.dumps(doc).encode())
    assert report.failure == ("block 8 adopts membership 3 at tree size 16, the membership "
                              "chain has 2 transitions ending at sizes [7, 11]")


def _old_tax_key_record(g: GovLedger) -> None:
    g.commit([agency_anchor("social"), tax_anchor(KEYS["tax"])])  # tax rotated it out


def _certificate_by_removed_validators(g: GovLedger) -> None:
    # M3 is V0, V2, V4, V5: V1 (removed by M3) and V3 (by M1) do not count.
    g.commit([agency_anchor("social")],
             cert_keys=[VALIDATOR_KEYS[0], VALIDATOR_KEYS[1], VALIDATOR_KEYS[3]])


@pytest.mark.parametrize("tail, failure", [
    (_old_tax_key_record, "record 20 (block 11, tile/entries/000.p/21 entry at byte "),
    (_certificate_by_removed_validators, "block 11 commit certificate"),
])
def test_verify_ledger_refuses_what_only_removed_members_signed(
        tmp_path: Path, tail: Callable[[GovLedger], None], failure: str) -> None:
    bad = Exported(tmp_path, tail)
    for report in (bad.verify(bad.chain.read_bytes()), bad.verify(), bad.verify(jobs=2)):
        assert report.failure.startswith(failure), report.failure
        if tail is _old_tax_key_record:
            assert report.failure.endswith("is not a record key of the membership in force "
                                           "at this index")
        else:
            assert "certificate has 1 of 3 required power" in report.failure


def test_verify_ledger_without_a_chain_refuses_an_old_key_right_after_its_rotation(
        tmp_path: Path) -> None:
    """The records after an adoption that the checker already took under the old keys
    are re-checked for keys in force: a rotated-out key fails there too."""
    def tail(g: GovLedger) -> None:
        p = propose("tax", M4, base=M3, key=TAX_NEXT)
        g.commit([p, approve("social", p), tax_anchor(TAX_NEXT)])  # rotates TAX_NEXT out
        g.commit([tax_anchor(TAX_NEXT)])

    bad = Exported(tmp_path, tail)
    report = bad.verify()
    assert report.failure.startswith("record 22 (block 12, "), report.failure
    assert report.failure.endswith("is not a record key of the membership in force at this "
                                   "index")
    assert [t.tree_size for t in report.transitions] == [7, 11, 16, 22]


# --- the command ---------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_verify_ledger_receipt_and_consistency_with_the_chain(
        exported: Exported, capsys: pytest.CaptureFixture[str]) -> None:
    f = exported.folder
    code, out, err = _cli(capsys, "audit", "verify-ledger", f / "export", "--trust",
                          exported.genesis, "--chain", exported.chain)
    assert code == 0, err
    code, out, err = _cli(capsys, "audit", "verify-receipt", f / "receipt", "--record",
                          f / "record", "--trust", exported.genesis, "--chain", exported.chain)
    assert code == 0, err
    assert out.startswith("OK: record (anchor by tax) is entry 0") and \
        "signed by 4 of 4 validators of membership 3 (need 3)" in out
    code, out, err = _cli(capsys, "audit", "verify-consistency", f / "old.checkpoint",
                          f / "new.checkpoint", "--proof", f / "consistency.proof",
                          "--trust", exported.genesis, "--chain", exported.chain)
    assert code == 0 and f"size {exported.size} extends its state at size 2" in out, err


def test_cli_verify_ledger_without_the_chain_lists_the_transitions(
        exported: Exported, capsys: pytest.CaptureFixture[str]) -> None:
    f = exported.folder
    code, out, err = _cli(capsys, "audit", "verify-ledger", f / "export", "--trust",
                          exported.genesis)
    assert code == 0, err
    assert ("  membership transitions: 3\n"
            "    membership 1 adopted in block 3 at tree size 7: test change (approved by tax,"
            " social, health)\n") in out
    assert "    membership 3 adopted in block 8 at tree size 16: " in out
    code, out, err = _cli(capsys, "audit", "verify-ledger", f / "export", "--trust",
                          exported.genesis, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"], err
    assert [(t["number"], t["height"], t["tree_size"], t["membership"])
            for t in doc["membership_transitions"]] == [
        (1, 3, 7, M1.hash.hex()), (2, 6, 11, M2.hash.hex()), (3, 8, 16, M3.hash.hex())]


def test_cli_refuses_a_bad_chain_with_one_failed_line(
        exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = exported.folder
    doc = json.loads(exported.chain.read_bytes())
    del doc["transitions"][0]["records"][-1]  # an approval missing
    bad = tmp_path / "chain.json"
    bad.write_text(json.dumps(doc))
    for verb in (["verify-receipt", f / "receipt", "--record", f / "record"],
                 ["verify-consistency", f / "old.checkpoint", f / "new.checkpoint",
                  "--proof", f / "consistency.proof"],
                 ["verify-ledger", f / "export"]):
        code, out, err = _cli(capsys, "audit", *verb, "--trust", exported.genesis,
                              "--chain", bad)
        assert code == 1 and out == "", (verb, err)
        assert err == ("FAILED: membership chain transition 1: 2 distinct approvals, "
                       "membership 0 adopts with exactly 3\n")
    code, out, err = _cli(capsys, "audit", "verify-receipt", f / "receipt", "--record",
                          f / "record", "--trust", exported.genesis)
    assert code == 1 and err.startswith("FAILED: ") and err.count("\n") == 1
    assert "pass --chain" in err


def test_backup_of_a_governed_store_verifies_its_checkpoint_through_the_chain(
        tmp_path: Path) -> None:
    g = build_governed(tmp_path / "store")
    g.close()
    manifest = create_backup(tmp_path / "store", tmp_path / "backup", datetime.now(UTC),
                             GENESIS.to_bytes())
    assert manifest.tree_size == 19
    assert verify_backup(tmp_path / "backup", GENESIS.to_bytes()).tree_size == 19


# --- the chain in exports and next to receipts -------------------------------------


def test_export_carries_the_membership_chain_that_verifies_its_receipts(
        exported: Exported, capsys: pytest.CaptureFixture[str]) -> None:
    export = exported.folder / "export"
    chain = ExportReader(export).membership_chain()
    assert chain is not None and (export / CHAIN_FILE).read_bytes() == chain
    history = verify_chain(chain, GENESIS)
    assert history.memberships[1:] == (M1, M2, M3) and history.sizes == (7, 11, 16)
    code, out, err = _cli(capsys, "audit", "verify-receipt", exported.folder / "receipt",
                          "--record", exported.folder / "record", "--trust",
                          exported.genesis, "--chain", export / CHAIN_FILE)
    assert code == 0 and "validators of membership 3" in out, err


def test_export_without_membership_changes_has_no_chain(tmp_path: Path) -> None:
    g = GovLedger(tmp_path / "store")
    try:
        g.commit([agency_anchor("tax")])
        export_ledger(g.ledger, tmp_path / "export")
    finally:
        g.close()
    assert ExportReader(tmp_path / "export").membership_chain() is None
    assert not (tmp_path / "export" / CHAIN_FILE).exists()


@pytest.mark.parametrize("source", ["--export", "--data-dir"])
def test_receipt_command_writes_the_chain_the_receipt_needs(
        exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        source: str) -> None:
    folder = exported.folder / ("export" if source == "--export" else "store")
    out = tmp_path / "cut" / "r11"
    code, said, err = _cli(capsys, "receipt", source, folder, "--index", "11", "--out", out)
    assert code == 0, err
    chain = Path(f"{out}.membership-chain.json")
    assert said.startswith(f"record 11 at tree size {exported.size}: wrote ") and \
        str(chain) in said
    code, said, err = _cli(capsys, "audit", "verify-receipt", f"{out}.tlog-proof",
                           "--record", f"{out}.record", "--trust", exported.genesis,
                           "--chain", chain)
    assert code == 0 and said.startswith("OK: record (anchor by tax) is entry 11"), err
    # before the first change the genesis is enough: no chain unless asked for one
    early = tmp_path / "r0"
    code, said, err = _cli(capsys, "receipt", source, folder, "--index", "0", "--size", "2",
                           "--out", early)
    assert code == 0 and "the genesis alone verifies it" in said, err
    assert not Path(f"{early}.membership-chain.json").exists()
    code, said, err = _cli(capsys, "audit", "verify-receipt", f"{early}.tlog-proof",
                           "--record", f"{early}.record", "--trust", exported.genesis)
    assert code == 0, err
    asked = tmp_path / "asked.json"
    code, said, err = _cli(capsys, "receipt", source, folder, "--index", "0", "--size", "2",
                           "--out", early, "--chain-out", asked)
    assert code == 0, err
    assert verify_chain(asked.read_bytes(), GENESIS).for_size(2) == M0  # a valid chain


def test_receipt_command_refuses_an_unknown_record(
        exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "receipt", "--export", exported.folder / "export",
                        "--index", str(exported.size), "--out", tmp_path / "x")
    assert code == 2 and err == (f"error: --index {exported.size} is outside the ledger "
                                 f"(0..{exported.size - 1})\n")
    code, _, err = _cli(capsys, "receipt", "--export", exported.folder / "export",
                        "--record-id", "ab" * 32, "--out", tmp_path / "x")
    assert code == 2 and err == f"error: no record {'ab' * 32} in the ledger\n"


def test_verify_ledger_names_checkpoint_signers_not_in_force_without_a_chain_hint(
        tmp_path: Path) -> None:
    """verify-ledger never needs a chain: a checkpoint signed by keys not in force fails
    naming them, with no hint to pass one."""
    g = GovLedger(tmp_path / "store")
    try:
        g.commit([agency_anchor("tax")])
        g.commit([agency_anchor("social")],
                 checkpoint_keys=[VALIDATOR_KEYS[0], VALIDATOR_KEYS[1], V5])
        export_ledger(g.ledger, tmp_path / "export")
    finally:
        g.close()
    report = verify_export(ExportReader(tmp_path / "export"), GENESIS.to_bytes())
    assert report.failure.startswith("checkpoint of block 2 ("), report.failure
    assert report.failure.endswith("2 of 4 signatures, need 3 (membership 0 signs this size); "
                                   "signatures by keys not trusted for this size: "
                                   "validator.extra"), report.failure

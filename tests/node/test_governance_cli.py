"""`shadowledger governance propose` edits: the membership built from flags, the diff."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ledger.errors import FormatError, UsageError
from ledger.genesis import Validator
from ledger.membership import Membership
from node.cli import build_parser
from node.governance_cli import (
    Edits,
    describe_changes,
    edit_membership,
    edits_from_args,
    read_agency_file,
)
from tests.ledger.governance_helpers import EXTRA_VALIDATOR, M0, TAX_NEXT, new_key
from tests.ledger.policy_helpers import VALIDATOR_KEYS


def test_add_and_remove_validators_and_change_power() -> None:
    added = Validator(EXTRA_VALIDATOR.verifier, 2, "tax", "127.0.0.1:7005")
    grown = edit_membership(M0, Edits(add_validators=[added]))
    assert len(grown.validators) == 5 and grown.validator(added.key.public_key) == added
    first = VALIDATOR_KEYS[0].verifier.to_vkey()
    shrunk = edit_membership(grown, Edits(remove_validators=[first],
                                          set_power=[(added.key.to_vkey(), 1)]))
    assert VALIDATOR_KEYS[0].verifier.public_key not in {
        v.key.public_key for v in shrunk.validators}
    assert shrunk.validator(added.key.public_key).power == 1  # type: ignore[union-attr]
    text = "\n".join(describe_changes(M0, grown))
    assert "+ validator validator.extra" in text and "127.0.0.1:7005" in text
    assert "validators 4 -> 5 (checkpoint quorum 3 -> 4)" in text
    assert "- validator" in "\n".join(describe_changes(grown, shrunk))


def test_rotate_record_key_and_agency_changes(tmp_path: Path) -> None:
    rotated = edit_membership(M0, Edits(rotate_record_key=[("tax", TAX_NEXT.verifier)]))
    assert rotated.agency("tax").record_keys == (TAX_NEXT.verifier,)  # type: ignore[union-attr]
    assert any(line.startswith("~ agency tax: record keys")
               for line in describe_changes(M0, rotated))
    newcomer = new_key("housing", 77)
    path = tmp_path / "housing.json"
    path.write_text(json.dumps({"name": "housing", "role": "agency",
                                "record_keys": [newcomer.verifier.to_vkey()]}))
    bigger = edit_membership(M0, Edits(add_agencies=[read_agency_file(path)], approvals=3))
    assert bigger.agency("housing") is not None and "housing" in bigger.voters
    smaller = edit_membership(bigger, Edits(remove_agencies=["social"]))
    assert smaller.agency("social") is None
    assert smaller.approvals <= len(smaller.voters)  # capped when voters leave
    assert Membership.from_bytes(smaller.to_bytes()) == smaller


def test_rotate_a_validator_key_keeps_its_power_and_agency() -> None:
    old = M0.validators[1]
    new = new_key("validator.next", 88).verifier
    rotated = edit_membership(M0, Edits(rotate_validator_key=[(old.key.to_vkey(), new)]))
    assert rotated.validator(old.key.public_key) is None
    assert rotated.validator(new.public_key) == replace(old, key=new)
    assert len(rotated.validators) == 4


def test_bad_edits_are_refused_with_a_reason() -> None:
    with pytest.raises(UsageError, match="nothing to propose"):
        edit_membership(M0, Edits())
    with pytest.raises(UsageError, match="no validator"):
        edit_membership(M0, Edits(remove_validators=["validator.nobody"]))
    with pytest.raises(UsageError, match="already"):
        edit_membership(M0, Edits(add_validators=[M0.validators[0]]))
    with pytest.raises(UsageError, match="no agency"):
        edit_membership(M0, Edits(remove_agencies=["nobody"]))
    with pytest.raises(FormatError):
        edit_membership(M0, Edits(approvals=99))
    with pytest.raises(UsageError, match="is the current one"):
        edit_membership(M0, Edits(approvals=M0.approvals))


def test_propose_flags_parse_into_edits(tmp_path: Path) -> None:
    vkey_file = tmp_path / "v.vkey"
    vkey_file.write_text(EXTRA_VALIDATOR.verifier.to_vkey() + "\n")
    args = build_parser().parse_args([
        "governance", "propose", "--profile", "client.toml",
        "--add-validator", str(vkey_file), "1", "tax", "127.0.0.1:9",
        "--remove-validator", "validator.tax", "--set-power", "validator.social", "2",
        "--rotate-record-key", "tax", TAX_NEXT.verifier.to_vkey(), "--approvals", "2",
    ])
    edits = edits_from_args(args)
    assert edits.add_validators == [Validator(EXTRA_VALIDATOR.verifier, 1, "tax",
                                              "127.0.0.1:9")]
    assert edits.remove_validators == ["validator.tax"]
    assert edits.set_power == [("validator.social", 2)]
    assert edits.rotate_record_key == [("tax", TAX_NEXT.verifier)]
    assert edits.approvals == 2
    for verb in ("approve", "list", "show", "chain"):
        extra = {"approve": ["abcd"], "chain": ["--out", "x"]}.get(verb, [])
        parsed = build_parser().parse_args(["governance", verb, "--profile", "p", *extra])
        assert callable(parsed.handler)

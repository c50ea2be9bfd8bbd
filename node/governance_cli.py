"""`shadowledger governance propose|approve|list|show|chain`: membership changes.

``propose`` builds the new membership from the one in force at the agency's node with
edits given as flags, prints the difference and submits the proposal (signed with the
profile's record key: it counts as that agency's approval). Other agencies ``approve``
it by id; once the current membership's ``approvals`` are reached it is adopted and in
force from the next block (docs/GOVERNANCE.md, runbook in docs/OPERATIONS.md).

The edits (``edit_membership``) and the difference (``describe_changes``) are pure
functions over ``ledger.membership.Membership``; the verbs around them do the I/O.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ledger.errors import FormatError, UsageError
from ledger.genesis import Agency, Validator, _agency
from ledger.keys import VerifierKey
from ledger.membership import Membership
from node.agreement_cli import _parse_time, _profile_key

MAX_AGENCY_FILE_BYTES = 1 << 20


@dataclass
class Edits:
    """What ``propose`` changes, in the order applied: removals, additions, changes."""

    add_validators: list[Validator] = field(default_factory=list)
    remove_validators: list[str] = field(default_factory=list)
    """vkeys (or key names) of validators to remove."""
    set_power: list[tuple[str, int]] = field(default_factory=list)
    add_agencies: list[Agency] = field(default_factory=list)
    remove_agencies: list[str] = field(default_factory=list)
    rotate_record_key: list[tuple[str, VerifierKey]] = field(default_factory=list)
    rotate_client_cert: list[tuple[str, str]] = field(default_factory=list)
    rotate_node_cert: list[tuple[str, str]] = field(default_factory=list)
    rotate_validator_key: list[tuple[str, VerifierKey]] = field(default_factory=list)
    """(old validator vkey or name, new key): same power, agency and address."""
    approvals: int | None = None

    def empty(self) -> bool:
        return not (self.add_validators or self.remove_validators or self.set_power
                    or self.add_agencies or self.remove_agencies or self.rotate_record_key
                    or self.rotate_client_cert or self.rotate_node_cert
                    or self.rotate_validator_key or self.approvals is not None)


def _find_validator(m: Membership, ref: str) -> Validator:
    for v in m.validators:
        if ref in (v.key.to_vkey(), v.key.name):
            return v
    raise UsageError(f"no validator {ref!r} in the current membership (give its vkey)")


def _agency_of(m: Membership, name: str) -> Agency:
    found = m.agency(name)
    if found is None:
        raise UsageError(f"no agency {name!r} in the current membership")
    return found


def _replace_agency(m: Membership, new: Agency) -> Membership:
    return replace(m, agencies=tuple(new if a.name == new.name else a for a in m.agencies))


def edit_membership(current: Membership, edits: Edits) -> Membership:
    """The proposed membership; ``UsageError`` for an edit that does not apply, and the
    result is checked as a whole (``Membership.check``: ``FormatError``)."""
    if edits.empty():
        raise UsageError("nothing to propose: give at least one change (see --help)")
    m = current
    for ref in edits.remove_validators:
        gone = _find_validator(m, ref)
        m = replace(m, validators=tuple(v for v in m.validators if v is not gone))
    for name in edits.remove_agencies:
        _agency_of(m, name)
        m = replace(m, agencies=tuple(a for a in m.agencies if a.name != name))
    for agency in edits.add_agencies:
        if m.agency(agency.name) is not None:
            raise UsageError(f"agency {agency.name!r} is already a member")
        m = replace(m, agencies=(*m.agencies, agency))
    for validator in edits.add_validators:
        if m.validator(validator.key.public_key) is not None:
            raise UsageError(f"validator {validator.key.to_vkey()} is already in the set")
        m = replace(m, validators=(*m.validators, validator))
    for ref, power in edits.set_power:
        old = _find_validator(m, ref)
        m = replace(m, validators=tuple(replace(v, power=power) if v is old else v
                                        for v in m.validators))
    for ref, key in edits.rotate_validator_key:
        old = _find_validator(m, ref)
        if m.validator(key.public_key) is not None:
            raise UsageError(f"validator {key.to_vkey()} is already in the set")
        m = replace(m, validators=tuple(replace(v, key=key) if v is old else v
                                        for v in m.validators))
    for name, key in edits.rotate_record_key:
        m = _replace_agency(m, replace(_agency_of(m, name), record_keys=(key,)))
    for name, pem in edits.rotate_client_cert:
        m = _replace_agency(m, replace(_agency_of(m, name), client_certs=(pem,)))
    for name, pem in edits.rotate_node_cert:
        m = _replace_agency(m, replace(_agency_of(m, name), node_certs=(pem,)))
    if edits.approvals is not None:
        m = replace(m, approvals=edits.approvals)
    elif len(m.voters) < m.approvals:
        m = replace(m, approvals=max(len(m.voters), 1))  # removed voters: cap it
    m.check()
    if m.to_bytes() == current.to_bytes():
        raise UsageError("the proposed membership is the current one: nothing changes")
    return m


def _vkey_label(key: VerifierKey) -> str:
    return f"{key.name} {key.to_vkey()[-12:]}"


def describe_changes(old: Membership, new: Membership) -> list[str]:
    """One line per difference, '+' added, '-' removed, '~' changed."""
    lines: list[str] = []
    old_v = {v.key.public_key: v for v in old.validators}
    new_v = {v.key.public_key: v for v in new.validators}
    for key, v in new_v.items():
        if key not in old_v:
            at = f" at {v.address}" if v.address else ""
            lines.append(f"+ validator {_vkey_label(v.key)} power {v.power} "
                         f"(agency {v.agency or '-'}){at}")
        elif old_v[key] != v:
            lines.append(f"~ validator {_vkey_label(v.key)}: power {old_v[key].power} -> "
                         f"{v.power}, address {old_v[key].address or '-'} -> {v.address or '-'}")
    lines += [f"- validator {_vkey_label(v.key)}" for k, v in old_v.items() if k not in new_v]
    old_a = {a.name: a for a in old.agencies}
    new_a = {a.name: a for a in new.agencies}
    for name, a in new_a.items():
        was = old_a.get(name)
        if was is None:
            lines.append(f"+ agency {name} ({a.role}), {len(a.record_keys)} record key(s), "
                         f"{len(a.node_certs)} node cert(s), {len(a.client_certs)} client "
                         "cert(s)")
            continue
        if was.role != a.role:
            lines.append(f"~ agency {name}: role {was.role} -> {a.role}")
        if was.record_keys != a.record_keys:
            lines.append(f"~ agency {name}: record keys "
                         f"{', '.join(k.to_vkey()[-12:] for k in was.record_keys)} -> "
                         f"{', '.join(k.to_vkey()[-12:] for k in a.record_keys)}")
        if was.node_certs != a.node_certs:
            lines.append(f"~ agency {name}: node certificate(s) replaced")
        if was.client_certs != a.client_certs:
            lines.append(f"~ agency {name}: client certificate(s) replaced")
        if was.box_keys != a.box_keys:
            lines.append(f"~ agency {name}: box keys replaced")
    lines += [f"- agency {name}" for name in old_a if name not in new_a]
    if old.witnesses != new.witnesses:
        lines.append(f"~ witnesses: {len(old.witnesses)} -> {len(new.witnesses)}")
    if old.approvals != new.approvals:
        lines.append(f"~ approvals needed: {old.approvals} -> {new.approvals}")
    lines.append(f"validators {len(old.validators)} -> {len(new.validators)} "
                 f"(checkpoint quorum {old.threshold} -> {new.threshold}); "
                 f"membership {old.hash.hex()[:16]} -> {new.hash.hex()[:16]}")
    return lines


def read_agency_file(path: Path) -> Agency:
    """An agency to add, as JSON or TOML with the genesis's agency fields; certificates
    may be given as files (``node_cert_files``/``client_cert_files``, relative to it)."""
    data = path.read_bytes()
    if len(data) > MAX_AGENCY_FILE_BYTES:
        raise FormatError(f"{path}: {len(data)} bytes, over {MAX_AGENCY_FILE_BYTES}")
    try:
        doc: dict[str, Any] = (json.loads(data) if path.suffix == ".json"
                               else tomllib.loads(data.decode()))
        for key, files in (("node_certs", "node_cert_files"),
                           ("client_certs", "client_cert_files")):
            doc[key] = [*doc.get(key, []),
                        *((path.parent / f).read_text() for f in doc.pop(files, []))]
        return _agency(doc)
    except (ValueError, KeyError, TypeError, OSError, tomllib.TOMLDecodeError) as exc:
        raise FormatError(f"{path}: not an agency description: {exc}") from exc


def _vkey_file_or_text(text: str) -> VerifierKey:
    path = Path(text)
    return VerifierKey.from_vkey(path.read_text().strip() if path.is_file() else text)


def _vkey_ref(text: str) -> str:
    """A validator named by vkey text, a .vkey file, or its key name."""
    path = Path(text)
    return path.read_text().strip() if path.is_file() else text


def edits_from_args(args: argparse.Namespace) -> Edits:
    edits = Edits(approvals=args.approvals)
    for spec in args.add_validator or ():
        vkey, power, agency, address = spec
        edits.add_validators.append(Validator(_vkey_file_or_text(vkey), int(power), agency,
                                              "" if address == "-" else address))
    edits.remove_validators = [_vkey_ref(r) for r in args.remove_validator or ()]
    edits.set_power = [(_vkey_ref(ref), int(power)) for ref, power in args.set_power or ()]
    edits.add_agencies = [read_agency_file(Path(p)) for p in args.add_agency or ()]
    edits.remove_agencies = list(args.remove_agency or ())
    edits.rotate_record_key = [(name, _vkey_file_or_text(v))
                               for name, v in args.rotate_record_key or ()]
    edits.rotate_validator_key = [(_vkey_ref(old), _vkey_file_or_text(new))
                                  for old, new in args.rotate_validator_key or ()]
    edits.rotate_client_cert = [(name, Path(p).read_text())
                                for name, p in args.rotate_client_cert or ()]
    edits.rotate_node_cert = [(name, Path(p).read_text())
                              for name, p in args.rotate_node_cert or ()]
    return edits


def add_governance_parser(verbs: Any) -> None:
    gov = verbs.add_parser("governance", help="propose and approve membership changes")
    actions = gov.add_subparsers(dest="governance_verb", required=True, metavar="ACTION")
    profile = argparse.ArgumentParser(add_help=False)
    profile.add_argument("--profile", required=True, help="client.toml of your agency")

    propose = actions.add_parser(
        "propose", parents=[profile],
        help="propose a new membership built from the current one (prints the changes)")
    propose.add_argument("--add-validator", nargs=4, action="append",
                         metavar=("VKEY", "POWER", "AGENCY", "HOST:PORT"),
                         help="a validator (vkey text or file); HOST:PORT '-' for none")
    propose.add_argument("--remove-validator", action="append", metavar="VKEY",
                         help="vkey text, .vkey file or key name")
    propose.add_argument("--set-power", nargs=2, action="append", metavar=("VKEY", "POWER"))
    propose.add_argument("--add-agency", action="append", metavar="FILE",
                         help="JSON/TOML agency description (name, role, record_keys, certs)")
    propose.add_argument("--remove-agency", action="append", metavar="NAME")
    propose.add_argument("--rotate-record-key", nargs=2, action="append",
                         metavar=("AGENCY", "VKEY"), help="replace the agency's record keys")
    propose.add_argument("--rotate-validator-key", nargs=2, action="append",
                         metavar=("OLD_VKEY", "NEW_VKEY"),
                         help="replace a validator's key (its node names the new one as "
                         "keys.next_validator_key first)")
    propose.add_argument("--rotate-client-cert", nargs=2, action="append",
                         metavar=("AGENCY", "PEM_FILE"))
    propose.add_argument("--rotate-node-cert", nargs=2, action="append",
                         metavar=("AGENCY", "PEM_FILE"))
    propose.add_argument("--approvals", type=int, help="approvals later proposals need")
    propose.add_argument("--summary", default="", help="what changes, for people")
    propose.add_argument("--expires", default=None,
                         help="approvals count until then (ISO 8601 or Unix ms; default 24 h)")
    propose.add_argument("--dry-run", action="store_true", help="print the changes only")
    propose.set_defaults(handler=_propose)

    approve = actions.add_parser("approve", parents=[profile],
                                 help="approve a pending proposal as your agency")
    approve.add_argument("proposal_id", help="hex record id (a unique prefix will do)")
    approve.set_defaults(handler=_approve)

    listing = actions.add_parser("list", parents=[profile], help="pending proposals")
    listing.set_defaults(handler=_list)
    show = actions.add_parser("show", parents=[profile],
                              help="the membership in force and the adoptions so far")
    show.add_argument("--json", action="store_true", help="print the membership document")
    show.set_defaults(handler=_show)
    chain = actions.add_parser("chain", parents=[profile],
                               help="save the membership chain file (verified first)")
    chain.add_argument("--out", required=True, help="file to write")
    chain.set_defaults(handler=_chain)


def _client(profile: str) -> Any:
    from node.client import LedgerClient

    return LedgerClient.from_profile(profile)


def _propose(args: argparse.Namespace) -> int:
    with _client(args.profile) as client:
        current = client.membership()
        new = edit_membership(current, edits_from_args(args))
        summary = args.summary or "; ".join(describe_changes(current, new)[:-1])[:1000]
        for line in describe_changes(current, new):
            print(line)
        if args.dry_run:
            return 0
        expires = None if args.expires is None else _parse_time(args.expires)
        ack = client.propose_membership(_profile_key(args.profile), new, summary,
                                        expires_ms=expires, base=current)
        print(f"proposal {ack.record_id.hex()} committed at index {ack.index}; it needs "
              f"{current.approvals} approvals (yours counts)")
    return 0


def _approve(args: argparse.Namespace) -> int:
    with _client(args.profile) as client:
        pending = client.proposals()
        matches = [p for p in pending if p.proposal_id.hex().startswith(args.proposal_id)]
        if len(matches) != 1:
            raise UsageError(f"{len(matches)} pending proposals match {args.proposal_id!r} "
                             "(see `governance list`)")
        ack = client.approve_proposal(_profile_key(args.profile), matches[0].proposal_id)
        print(f"approved {matches[0].proposal_id.hex()} at index {ack.index}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with _client(args.profile) as client:
        gov = client.governance()
        if not gov.pending:
            print(f"no pending proposals (height {gov.height})")
        current = Membership.from_bytes(gov.membership)
        for p in gov.pending:
            stale = "" if p.base == gov.membership_hash else " [stale: base changed]"
            print(f"{p.proposal_id.hex()} by {p.author}: {len(p.approvers)}/"
                  f"{p.approvals_needed} approvals ({', '.join(p.approvers)}), "
                  f"expires {p.expires_ms}{stale}")
            print(f"  {p.summary}")
            for line in describe_changes(current, Membership.from_bytes(p.membership))[:-1]:
                print(f"  {line}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _client(args.profile) as client:
        gov = client.governance()
        m = Membership.from_bytes(gov.membership)
        if args.json:
            print(json.dumps(m.to_json(), indent=1, sort_keys=True))
            return 0
        print(f"membership {gov.membership_hash.hex()} at height {gov.height}: "
              f"{len(m.validators)} validators (quorum {m.threshold}), "
              f"{len(m.agencies)} agencies, {m.approvals} approvals needed")
        for v in m.validators:
            print(f"  validator {v.key.name} power {v.power} agency {v.agency or '-'} "
                  f"{v.address or ''}".rstrip())
        for a in m.agencies:
            print(f"  agency {a.name} ({a.role})")
        for t in gov.transitions:
            print(f"adoption {t.number}: from height {t.from_height} (sizes > {t.tree_size})"
                  f", proposal {t.proposal_id.hex()[:16]} approved by "
                  f"{', '.join(t.approvers)}: {t.summary}")
    return 0


def _chain(args: argparse.Namespace) -> int:
    with _client(args.profile) as client:
        data = client.update_memberships()  # verified; the client keeps it too
        adoptions = len(client.history.sizes)
    Path(args.out).write_bytes(data)
    print(f"wrote {args.out}: {adoptions} adoption(s), verified from the genesis; this "
          "profile's clients now trust the node certificates of the membership in force")
    return 0

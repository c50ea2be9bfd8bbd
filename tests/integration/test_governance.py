"""Governance end to end on real node processes (127.0.0.1): a 4-validator network grows to
5 and then 7 validators and shrinks back to 4 while a client keeps submitting records; a
removed validator's checkpoint signatures no longer count; a record-key rotation.

Seven agencies are members from the genesis, but only the first four run validators
there; the nodes of the other three run with their validator keys as followers until
governance adds them (docs/OPERATIONS.md, "Adding a validator"). The first four have no
``[[peers]]`` entry for the other three: they dial them at the address in the membership.
The module takes about 60 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from ledger.checkpoint import Checkpoint, checkpoint_note
from ledger.errors import SignatureError, VerificationError
from ledger.genesis import Agency, Genesis, TrustRoot
from ledger.keys import SigningKey, VerifierKey
from ledger.membership import Membership
from ledger.membership_chain import build_chain, verify_chain
from ledger.note import signature_for
from ledger.receipts import verify_receipt
from ledger.records import Envelope, sign_record
from node.client import Ack, ApiError, LedgerClient
from node.config import read_signing_key
from node.governance_cli import Edits, edit_membership
from node.localnet import generate, write_secret
from node.tls import generate_identity
from proto import ledger_pb2
from tests.integration.cluster import NETWORK, Cluster, _fast_timeouts, free_port_range

AGENCIES = [f"agency-{i}" for i in range(1, 8)]
EVERY_NODE = [*AGENCIES, "audit-office"]


def keys_dir(cluster: Cluster, agency: str) -> Path:
    return cluster.net.dir / agency / "keys"


def validator_vkey(cluster: Cluster, agency: str) -> VerifierKey:
    path = keys_dir(cluster, agency) / f"validator.{agency}.vkey"
    return VerifierKey.from_vkey(path.read_text().strip())


def validator_skey(cluster: Cluster, agency: str) -> SigningKey:
    return read_signing_key(keys_dir(cluster, agency) / f"validator.{agency}.skey")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("gov") / "net"
    base = free_port_range(8)
    metrics = free_port_range(8, avoid=range(base, base + 8))
    net = generate(folder, 7, base, NETWORK, datetime.now(UTC), os.urandom,
                   metrics_base_port=metrics)
    genesis = Genesis.from_bytes(net.genesis_path.read_bytes())
    # Four validators at genesis; two approvals (of seven voters) adopt a proposal.
    net.genesis_path.write_bytes(replace(genesis, validators=genesis.validators[:4],
                                         approvals=2).to_bytes())
    # The first four know only each other (and the auditor's node): they dial agencies 5-7
    # at the address governance gives when it makes them validators.
    for name in AGENCIES[:4]:
        config = next(n for n in net.nodes if n.agency == name).config_path
        config.write_text(re.sub(r'\[\[peers\]\]\nname = "agency-[5-7]"\naddress = "[^"]*"\n\n?',
                                 "", config.read_text()))
        assert "agency-5" not in config.read_text()
    _fast_timeouts(net)
    c = Cluster(net)
    try:
        for name in EVERY_NODE:
            c.start(name)
        wait_ready(c, EVERY_NODE)
        yield c
    finally:
        c.stop_all()


def status(cluster: Cluster, node: str) -> tuple[int, int, bytes]:
    with cluster.client("agency-1", via=node, timeout=5) as c:
        s = c.status()
    return s.height, s.tree_size, s.root


def wait_ready(cluster: Cluster, nodes: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        while True:
            try:
                status(cluster, node)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def wait_same_root(cluster: Cluster, nodes: list[str], size: int, timeout: float = 60.0
                   ) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        states = {n: status(cluster, n) for n in nodes}
        roots = {root for _, s, root in states.values() if s == size}
        if len(roots) == 1 and all(s == size for _, s, _ in states.values()):
            return roots.pop()
        if time.monotonic() > deadline:
            raise AssertionError(f"nodes did not converge on size {size}: {states}")
        time.sleep(0.3)


def anchor(agency: str, key: SigningKey, i: int) -> Envelope:
    body = ledger_pb2.RecordBody(
        network=NETWORK, agency=agency, nonce=os.urandom(16),
        anchor=ledger_pb2.Anchor(source="registry/persons", version=str(i),
                                 commitment=os.urandom(32)))
    return sign_record(body, key)


@dataclass
class Submitter:
    """agency-5 keeps submitting through agency-1's node (a validator throughout)."""

    cluster: Cluster
    acks: list[Ack] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        key = self.cluster.key("agency-5")
        i = 0
        try:
            with self.cluster.client("agency-5", via="agency-1") as client:
                while not self.stop.is_set():
                    batch = [anchor("agency-5", key, i + j) for j in range(10)]
                    i += 10
                    for result in client.submit_many(batch):
                        if not isinstance(result, Ack):
                            raise AssertionError(f"refused: {result}")
                        self.acks.append(result)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


def adopt(cluster: Cluster, new: Membership, summary: str) -> Membership:
    """agency-1 proposes, agency-2 approves (2 approvals): in force from the next block."""
    with cluster.client("agency-1") as one, cluster.client("agency-2") as two:
        current = one.membership()
        ack = one.propose_membership(cluster.key("agency-1"), new, summary, base=current)
        # agency-2's node may be a block behind agency-1's
        eventually(lambda: ack.record_id in [p.proposal_id for p in two.proposals()])
        two.approve_proposal(cluster.key("agency-2"), ack.record_id)
        assert two.membership() == new  # adopted by the approval's block (committed)
        assert two.proposals() == []
        eventually(lambda: one.membership() == new)
    return new


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def wait_height_above(cluster: Cluster, node: str, height: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while status(cluster, node)[0] <= height:
        if time.monotonic() > deadline:
            raise AssertionError(f"{node} stuck at height {height}")
        time.sleep(0.2)


def cli(cluster: Cluster, *args: str) -> str:
    env = dict(os.environ, GRPC_VERBOSITY="ERROR")
    done = subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_validators_grow_and_shrink_while_records_commit(cluster: Cluster) -> None:
    submitter = Submitter(cluster)
    thread = threading.Thread(target=submitter.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        with cluster.client("agency-1") as client:
            m0 = client.membership()
        assert len(m0.validators) == 4

        def with_validators(m: Membership, names: list[str]) -> Membership:
            return edit_membership(m, Edits(add_validators=[
                replace(m0.validators[0], key=validator_vkey(cluster, n), agency=n,
                        address=cluster.node(n).address) for n in names]))

        # the followers keep up although no validator dials them (they pull blocks)
        height = status(cluster, "agency-1")[0]
        for name in ("agency-5", "agency-6", "agency-7"):
            eventually(lambda n=name: status(cluster, n)[0] >= height)  # type: ignore[misc]
        # 4 -> 5, with the CLI: propose (diff printed), list, approve by prefix, show
        vkey_file = keys_dir(cluster, "agency-5") / "validator.agency-5.vkey"
        out = cli(cluster, "governance", "propose", "--profile",
                  str(cluster.profile_path("agency-1")), "--add-validator", str(vkey_file),
                  "1", "agency-5", cluster.node("agency-5").address,
                  "--summary", "add agency-5's validator")
        assert "+ validator validator.agency-5" in out and "4 -> 5" in out
        proposal = out.split("proposal ", 1)[1].split()[0]
        listed = cli(cluster, "governance", "list", "--profile",
                     str(cluster.profile_path("agency-1")))
        assert proposal in listed and "1/2 approvals" in listed
        with cluster.client("agency-2") as client:
            eventually(lambda: bytes.fromhex(proposal) in [p.proposal_id
                                                           for p in client.proposals()])
        cli(cluster, "governance", "approve", "--profile",
            str(cluster.profile_path("agency-2")), proposal[:16])
        shown = cli(cluster, "governance", "show", "--profile",
                    str(cluster.profile_path("agency-2")))
        assert "5 validators" in shown and "adoption 1" in shown
        with cluster.client("agency-1") as client:
            eventually(lambda: len(client.membership().validators) == 5)
            m1 = client.membership()
        # 5 -> 7
        m2 = adopt(cluster, with_validators(m1, ["agency-6", "agency-7"]), "add 6 and 7")
        height = status(cluster, "agency-1")[0]
        wait_height_above(cluster, "agency-7", height + 2)
        # 7 -> 4: agencies 2, 3 and 4 no longer run validators
        removed = [validator_vkey(cluster, n).to_vkey() for n in ("agency-2", "agency-3",
                                                                    "agency-4")]
        m3 = adopt(cluster, edit_membership(m2, Edits(remove_validators=removed)),
                   "remove 2, 3, 4")
        assert {v.agency for v in m3.validators} == {"agency-1", "agency-5", "agency-6",
                                                     "agency-7"}
        # an approval of an adopted (no longer pending) proposal is refused at admission
        with cluster.client("agency-3") as three, pytest.raises(ApiError) as stale:
            three.approve_proposal(cluster.key("agency-3"), bytes.fromhex(proposal))
        assert stale.value.code.name == "FAILED_PRECONDITION"
        assert proposal[:16] in str(stale.value)
        # keep committing under the new set for a while
        height = status(cluster, "agency-1")[0]
        wait_height_above(cluster, "agency-1", height + 3)
        time.sleep(1.0)
    finally:
        submitter.stop.set()
        thread.join(timeout=60)
    assert not submitter.errors, submitter.errors
    assert len(submitter.acks) >= 50
    size = max(a.checkpoint.size for a in submitter.acks)
    # every acknowledged record is committed on every running node, same root everywhere
    wait_same_root(cluster, EVERY_NODE, max(size, status(cluster, "agency-1")[1]))
    with cluster.client("agency-3", via="audit-office") as reader:
        for ack in submitter.acks[:: max(1, len(submitter.acks) // 25)]:
            assert reader.get_record(index=ack.index).record.record_id == ack.record_id


def test_a_removed_validators_checkpoint_signature_no_longer_counts(cluster: Cluster) -> None:
    with cluster.client("agency-1") as client:
        validators = {v.agency for v in client.membership().validators}
        assert "agency-2" not in validators, "run after the shrinking test"
        latest = client.checkpoint()
        cp = Checkpoint(latest.origin, latest.size, latest.root_hash)

        def note_by(*agencies: str) -> bytes:
            return checkpoint_note(cp, [signature_for(cp.to_text(), validator_skey(cluster, n))
                                        for n in agencies])

        # Two removed validators and two current ones: under the genesis set (agencies 1-4)
        # three of these would be a quorum; under the current set only two count, of 3.
        with pytest.raises(SignatureError):
            client._final(note_by("agency-2", "agency-3", "agency-1", "agency-5"))
        # the same checkpoint with a quorum of the current validators is final
        assert client._final(note_by("agency-1", "agency-5", "agency-6")).size == latest.size


def test_record_key_rotation(cluster: Cluster, tmp_path: Path) -> None:
    old_key = cluster.key("agency-6")
    new_key = SigningKey.generate("agency-6", os.urandom)
    with cluster.client("agency-6") as client:
        before = client.submit(anchor("agency-6", old_key, 1))
        receipt = client._call(client._stub.GetReceipt,
                               ledger_pb2_request(before.index)).tlog_proof
        current = client.membership()
    rotated = adopt(cluster, edit_membership(
        current, Edits(rotate_record_key=[("agency-6", new_key.verifier)])),
        "rotate agency-6's record key")
    with cluster.client("agency-6") as client:
        eventually(lambda: client.membership() == rotated)
        with pytest.raises(ApiError) as refused:
            client.submit(anchor("agency-6", old_key, 2))
        assert "agency-6" in str(refused.value) or refused.value.code.name in (
            "UNAUTHENTICATED", "PERMISSION_DENIED")
        after = client.submit(anchor("agency-6", new_key, 3))
        assert after.index > before.index
        # the old record still verifies, with the keys in force when it was committed
        assert client.get_record(index=before.index).record.record_id == before.record_id
        chain = client.membership_chain()
        genesis = client.genesis
    history = verify_chain(chain, genesis)
    assert len(history.sizes) == 4
    envelope = Envelope.from_bytes(old_record_bytes(cluster, before.index))
    trust = TrustRoot.load(cluster.net.genesis_path)
    verified = verify_receipt(receipt, envelope.raw, trust, history=history)
    assert verified.index == before.index
    chain_file = tmp_path / "membership-chain.json"
    cli(cluster, "governance", "chain", "--profile", str(cluster.profile_path("agency-4")),
        "--out", str(chain_file))
    record_file, receipt_file = tmp_path / "record.bin", tmp_path / "receipt.txt"
    record_file.write_bytes(envelope.raw)
    receipt_file.write_bytes(receipt)
    out = cli(cluster, "audit", "verify-receipt", str(receipt_file), "--record",
              str(record_file), "--trust", str(cluster.net.genesis_path),
              "--chain", str(chain_file))
    assert f"entry {before.index} " in out


def checkpoint_request(size: int) -> object:
    from proto import node_pb2

    return node_pb2.CheckpointRequest(tree_size=size)


def ledger_pb2_request(index: int) -> object:
    from proto import node_pb2

    return node_pb2.GetRecordRequest(index=index)


def old_record_bytes(cluster: Cluster, index: int) -> bytes:
    with cluster.client("agency-1") as client:
        response = client._call(client._stub.GetRecord, ledger_pb2_request(index))
    return bytes(response.envelope)


def test_a_new_agency_is_accepted_and_a_removed_one_refused_without_restart(
        cluster: Cluster) -> None:
    now = datetime.now(UTC)
    client_cert, client_key = generate_identity("client.housing", now, 30)
    node_cert, _ = generate_identity("node.housing", now, 30)
    record_key = SigningKey.generate("housing", os.urandom)
    genesis_bytes = cluster.net.genesis_path.read_bytes()
    address = cluster.node("agency-3").address  # a node that is no validator any more

    def housing() -> LedgerClient:
        return LedgerClient.connect(address, genesis_bytes, client_cert, client_key,
                                    "node.agency-3", timeout=5)

    with housing() as client, pytest.raises(ApiError) as refused:
        client.status()
    assert refused.value.code.name == "UNAVAILABLE"  # the TLS handshake fails
    agency = Agency("housing", (record_key.verifier,), "agency", (node_cert.decode(),),
                    (client_cert.decode(),))
    with cluster.client("agency-1") as one:
        current = one.membership()
    joined = adopt(cluster, edit_membership(current, Edits(add_agencies=[agency])),
                   "add housing")
    with cluster.client("agency-3") as own:
        eventually(lambda: own.membership() == joined)
    with housing() as client:
        ack = client.submit(anchor("housing", record_key, 1))
        assert client.get_record(index=ack.index).record.record_id == ack.record_id
    left = adopt(cluster, edit_membership(joined, Edits(remove_agencies=["housing"])),
                 "remove housing")
    with cluster.client("agency-3") as own:
        eventually(lambda: own.membership() == left)
    with housing() as client, pytest.raises(ApiError) as refused:
        client.status()
    assert refused.value.code.name == "UNAVAILABLE"


def test_validator_key_rotation(cluster: Cluster) -> None:
    """agency-7's node gets its next key in its config and restarts; governance swaps the
    key in the set; with agency-6's node down, the set {1, 5, 6, 7} commits only if
    agency-7 votes and signs checkpoints with its new key."""
    node = cluster.node("agency-7")
    new_key = SigningKey.generate("validator.agency-7.next", os.urandom)
    key_file = keys_dir(cluster, "agency-7") / "validator.agency-7.next.skey"
    write_secret(key_file, (new_key.to_skey() + "\n").encode())
    text = node.config_path.read_text()
    old_line = 'validator_key = "keys/validator.agency-7.skey"'
    assert old_line in text
    node.config_path.write_text(text.replace(
        old_line, f'{old_line}\nnext_validator_key = "keys/{key_file.name}"'))
    cluster.stop("agency-7")
    cluster.start("agency-7")
    wait_ready(cluster, ["agency-7"])
    with cluster.client("agency-1") as one:
        current = one.membership()
    old = validator_vkey(cluster, "agency-7").to_vkey()
    adopt(cluster, edit_membership(current, Edits(rotate_validator_key=[(old,
                                                                         new_key.verifier)])),
          "rotate agency-7's validator key")
    cluster.stop("agency-6")
    with cluster.client("agency-1") as one:
        ack = one.submit(anchor("agency-1", cluster.key("agency-1"), 99))
        note = one.checkpoint()
    assert ack.checkpoint.size > 0 and note.size >= ack.checkpoint.size
    with cluster.client("agency-1") as one:
        response = one._call(one._stub.GetCheckpoint, checkpoint_request(ack.checkpoint.size))
    assert "validator.agency-7.next" in response.note.decode()


def test_node_certificate_rotation(cluster: Cluster) -> None:
    """agency-4's node gets a new TLS certificate by governance; after its restart with
    it, its agency's client (which saved the verified membership chain) and the other
    nodes trust it."""
    keys = keys_dir(cluster, "agency-4")
    cert, key = generate_identity("node.agency-4", datetime.now(UTC), 30)
    (keys / "node-new.crt").write_bytes(cert)
    write_secret(keys / "node-new.key", key)
    with cluster.client("agency-1") as one:
        current = one.membership()
    rotated = adopt(cluster, edit_membership(current, Edits(
        rotate_node_cert=[("agency-4", cert.decode())])), "rotate agency-4's node cert")
    with cluster.client("agency-4", via="agency-1") as client:
        client.update_memberships()  # verified, and saved beside the client's state
        # a node serving an older (still valid) prefix of the chain cannot make the client
        # forget adoptions it verified
        client.membership_chain = lambda: build_chain(  # type: ignore[method-assign]
            cast(Any, None), NETWORK, ())
        with pytest.raises(VerificationError, match="does not extend"):
            client.update_memberships()
        assert client.history.for_size(1 << 40).hash == rotated.hash
    node = cluster.node("agency-4")
    cluster.stop("agency-4")
    text = node.config_path.read_text()
    node.config_path.write_text(text.replace('"keys/node.crt"', '"keys/node-new.crt"')
                                .replace('"keys/node.key"', '"keys/node-new.key"'))
    cluster.start("agency-4")
    with cluster.client("agency-4") as own:  # its own node, with the new certificate
        eventually(lambda: _reachable(own), timeout=30)
        assert own.membership() == rotated
        height = own.status().height
        # it follows the chain again: the other nodes accept and dial it
        eventually(lambda: own.status().height > height + 2, timeout=30)


def _reachable(client: LedgerClient) -> bool:
    try:
        client.status()
    except ApiError:
        return False
    return True

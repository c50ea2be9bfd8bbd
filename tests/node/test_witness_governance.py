"""A witness follows validator changes through a membership chain file (witness.toml
``membership_chain``): checkpoints past a change are refused with the genesis quorum
alone and cosigned once the chain, verified from the genesis, is in place."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from ledger.keys import ALG_COSIGNATURE_V1, SigningKey
from ledger.witness import AddCheckpoint, LogTrust
from node.logging_setup import get_logger
from node.witness.alarms import Alarms
from node.witness.server import ChainTrust, Witness
from node.witness.store import WitnessStore
from tests.ledger.governance_ledger import build_governed
from tests.ledger.policy_helpers import GENESIS

LOG = get_logger("test")


def test_a_witness_cosigns_past_a_validator_change_with_the_chain(tmp_path: Path) -> None:
    governed = build_governed(tmp_path / "ledger")
    try:
        size, note = governed.ledger.latest_checkpoint()  # type: ignore[misc]
        chain = governed.chain()
    finally:
        governed.close()
    key = SigningKey.generate("witness.test", os.urandom, alg=ALG_COSIGNATURE_V1)
    chain_file = tmp_path / "membership-chain.json"
    registry = CollectorRegistry()
    trust = LogTrust(GENESIS.network, tuple(GENESIS.validator_keys), GENESIS.threshold)
    witness = Witness(trust, key, WitnessStore(tmp_path / "witness.sqlite"),
                      Alarms(tmp_path / "alarms", key.verifier.to_vkey(), registry, LOG),
                      registry, LOG, trust_for_size=ChainTrust(GENESIS, chain_file, LOG))
    request = AddCheckpoint(0, (), note).to_bytes()
    refused = witness.add_checkpoint(request, 1)  # no chain yet: the genesis validators
    assert refused.status == 403, refused.reason
    chain_file.write_bytes(b"{}")  # a chain that does not verify changes nothing
    assert witness.add_checkpoint(request, 2).status == 403
    chain_file.write_bytes(chain)
    accepted = witness.add_checkpoint(request, 3)
    assert accepted.status == 200, accepted.reason
    assert accepted.accept is not None and accepted.accept.checkpoint.size == size
    witness.store.close()

"""A node built from a membership whose validators carry addresses dials those not in its
config's peers (the node is built, not started: its server binds a free loopback port
and is stopped again)."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ledger.genesis import Genesis
from node.config import load_config
from node.localnet import generate
from node.node import Node
from tests.integration.cluster import free_port_range


def test_validators_not_in_the_config_are_dialed_at_the_membership_address(
        tmp_path: Path) -> None:
    base = free_port_range(5)
    net = generate(tmp_path / "net", 4, base, "test.example/v1", datetime.now(UTC),
                   os.urandom, metrics_base_port=free_port_range(5, avoid=range(base, base + 5)))
    genesis = Genesis.from_bytes(net.genesis_path.read_bytes())
    addressed = tuple(replace(v, address=f"127.0.0.1:{23000 + i}")
                      for i, v in enumerate(genesis.validators))
    net.genesis_path.write_bytes(replace(genesis, validators=addressed).to_bytes())
    me = net.validators[0]
    text = me.config_path.read_text()
    # keep only the observer as a configured peer
    text = re.sub(r'\[\[peers\]\]\nname = "(?!audit-office)[^"]*"\naddress = "[^"]*"\n\n?',
                  "", text)
    me.config_path.write_text(text)
    node = Node(load_config(me.config_path))
    try:
        links = {name: link.peer.address for name, link in node.peers.links.items()}
        others = {v.agency: v.address for v in addressed if v.agency != me.agency}
        assert links == {**others, "audit-office": links["audit-office"]}
        assert node.validators.total_power == 4 and node.driver is not None
    finally:
        node.server.stop(None)
        node.storage.close()
        node.deliveries.close()

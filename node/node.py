"""One node: storage, mempool, consensus driver, peers and the gRPC server, wired together.

``Node(config).start()`` brings it up; ``stop()`` shuts it down cleanly (the gRPC server
stops taking calls, consensus stops between actions, LMDB is closed after the last write).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from consensus.certificate import CommitCertificate, check_certificate
from consensus.crypto import verify_message
from consensus.events import ConsensusConfig
from consensus.messages import Proposal, Vote
from consensus.validators import ValidatorSet
from ledger.blocks import Block
from ledger.errors import LedgerError
from ledger.genesis import Genesis, genesis_hash
from ledger.keys import SigningKey
from ledger.ledger_store import Ledger
from ledger.membership import Membership
from ledger.policy import PolicyBook, PolicyRules, PolicyView
from ledger.storage import Storage, StorageConfig
from node.app import BlockPolicy, LedgerApp
from node.checkpoints import CheckpointCollector
from node.commits import CommitBoard
from node.config import NodeConfig, read_signing_key
from node.explorer.server import ExplorerServer
from node.logging_setup import get_logger
from node.memberships import MembershipSource, NodeMemberships
from node.mempool import Mempool, MempoolConfig
from node.metrics import Metrics
from node.offledger import DeliveryStore
from node.peers import PeerAddress, PeerLink, PeerNetwork
from node.runtime import ConsensusDriver
from node.tls import (
    channel_credentials,
    channel_options,
    dynamic_server_credentials,
    genesis_all_pems,
    genesis_node_pems,
    pins_from_genesis,
)
from proto import node_pb2, node_pb2_grpc

GOSSIP_BATCH = 500
GOSSIP_LINGER_S = 0.002
FOLLOWER_PULL_S = 2
PEER_MESSAGE_HEADROOM = 1 << 20
"""Peer channels carry a block plus its certificate: allow more than one record message."""


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.name = config.node.name
        self.role = config.node.role
        self.log = get_logger("node").bind(node=self.name)
        self.genesis_bytes = config.node.genesis.read_bytes()
        self.genesis = Genesis.from_bytes(self.genesis_bytes)
        self.chain_id = genesis_hash(self.genesis_bytes)
        self.network = self.genesis.network
        self.limits = config.ledger_limits()
        self.storage = Storage(config.node.data_dir,
                               StorageConfig(map_size=config.storage.map_size))
        self.ledger = Ledger(self.storage, self.chain_id)
        self.policy = PolicyBook(self.ledger, PolicyRules.from_genesis(self.genesis))
        self.memberships = NodeMemberships(self._membership_source())
        current = self.memberships.current()
        self.pins = pins_from_genesis(current)
        self.metrics = Metrics()
        self.mempool_config = MempoolConfig(config.mempool.max_records, config.mempool.max_bytes)
        self.mempool = Mempool(self.network, current.keyring(), self.limits,
                               self.mempool_config, self.ledger.index_of, self.ledger.indices_of,
                               on_check=self.metrics.signature_checks.inc)
        self.board = CommitBoard(self.ledger.tree.size, self.ledger.head.height)
        self._tls = (config.keys.tls_cert.read_bytes(), config.keys.tls_key.read_bytes())
        self.peers = PeerNetwork([
            PeerLink(PeerAddress(p.name, p.address, p.server_name), self._channel,
                     self.log, ) for p in config.peers
        ])
        self.keys = self._validator_keys()
        self.key = self.keys[0] if self.keys else None
        self.checkpoints = CheckpointCollector(
            self.network, self.memberships.for_size, self.ledger, self.peers, self.keys,
            self.log,
        )
        self.memberships.listeners.append(self._membership_changed)
        self._started = False
        self._dial_validators(current)
        self.witnesses = None
        if config.witnesses:
            from node.witnessing import WitnessPusher

            self.witnesses = WitnessPusher(config.witnesses, self.ledger,
                                           self.metrics.registry, self.log,
                                           self.genesis.witnesses)
            self.checkpoints.listeners.append(self.witnesses.notify)
        self.driver = self._make_driver() if self.keys else None
        if self.driver is not None:
            self.memberships.staged = self.driver.app.governance_state
        self._gossip: queue.Queue[bytes] = queue.Queue()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.deliveries = DeliveryStore(config.delivery.dir, config.delivery.map_size)
        self.server, self.port = self._make_server()
        self.explorer: ExplorerServer | None = None
        from node.sync import BlockSync  # the sync module needs a constructed Node

        self.sync = BlockSync(self)
        self._register_metrics()

    # --- construction ------------------------------------------------------------------

    def _membership_source(self) -> MembershipSource:
        """The committed memberships (the ledger's governance book)."""
        return self.policy.governance

    def _validator_keys(self) -> list[SigningKey]:
        """This node's validator key and, during a rotation, the next one (config
        ``keys.next_validator_key``): it signs with whichever is in a height's set."""
        if not self.config.is_validator or self.config.keys.validator_key is None:
            return []
        keys = [read_signing_key(self.config.keys.validator_key)]
        if self.config.keys.next_validator_key is not None:
            keys.append(read_signing_key(self.config.keys.next_validator_key))
        return keys

    @property
    def validators(self) -> ValidatorSet:
        """The validator set the next block is decided by."""
        return self.memberships.validator_set(self.ledger.head.height + 1)

    def _proposer_key_hash(self, height: int) -> bytes:
        """Which of this node's validator keys proposes at ``height``: the one in its set."""
        in_set = {k.public_key for k in self.memberships.at(height).validator_keys}
        mine = [k for k in self.keys if k.verifier.public_key in in_set]
        return (mine[0] if mine else self.keys[0]).verifier.key_hash

    def _membership_changed(self, membership: Membership) -> None:
        """A new membership is in force (staged or committed): refresh what depends on it.
        TLS server pins follow through ``_server_pems`` (asked on each handshake)."""
        self.pins = pins_from_genesis(membership)
        self.mempool.set_keyring(membership.keyring())
        self._dial_validators(membership)
        if self.driver is not None:
            self.driver.peer_of_validator = _peer_of_validator(membership)
        self.log.info("membership changed", membership=membership.hash.hex()[:16],
                      validators=len(membership.validators), agencies=len(membership.agencies))

    def _dial_validators(self, membership: Membership) -> None:
        """Links to every validator of ``membership``: at the address in our config's
        ``peers`` if listed there, else at the membership's ``address``. Links this node
        made from a membership to agencies no longer validating are closed."""
        wanted = {v.agency: v.address for v in membership.validators
                  if v.agency and v.agency != self.name and v.address}
        configured = {p.name for p in self.config.peers}
        for agency, address in wanted.items():
            if agency not in self.peers.links:
                link = PeerLink(PeerAddress(agency, address, f"node.{agency}"), self._channel,
                                self.log)
                self.peers.add(link, start=self._started)
        for name in list(self.peers.links):
            if name not in configured and name not in wanted:
                self.peers.remove(name)

    def _server_pems(self) -> list[bytes]:
        return genesis_all_pems(self.memberships.current())

    def _channel(self, peer: PeerAddress) -> grpc.Channel:
        creds = channel_credentials(*self._tls, genesis_node_pems(self.memberships.current()))
        size = self.config.limits.max_message_bytes + PEER_MESSAGE_HEADROOM
        return grpc.secure_channel(peer.address, creds, channel_options(peer.server_name, size))

    def _make_driver(self) -> ConsensusDriver:
        assert self.key is not None
        c = self.config.consensus
        app = LedgerApp(
            self.ledger, self.mempool, self.network, self._proposer_key_hash,
            BlockPolicy(c.max_block_records, c.max_block_bytes,
                        idle_block_interval_ms=0 if c.create_empty_blocks
                        else c.timeout_propose_ms // 2,
                        max_time_ahead_ms=c.max_block_time_ahead_ms),
            self.limits, self.policy, on_refused=self.board.refused, log=self.log,
            clock_ms=lambda: int(time.time() * 1000) + self.config.node.clock_offset_ms,
        )
        consensus = ConsensusConfig(
            chain_id=self.chain_id, timeout_propose_ms=c.timeout_propose_ms,
            timeout_prevote_ms=c.timeout_prevote_ms, timeout_precommit_ms=c.timeout_precommit_ms,
            timeout_delta_ms=c.timeout_delta_ms,
        )
        return ConsensusDriver(
            config=consensus, validators=self.memberships, keys=self.keys, app=app,
            ledger=self.ledger, peers=self.peers, checkpoints=self.checkpoints, board=self.board,
            peer_of_validator=_peer_of_validator(self.memberships.current()),
            metrics=self.metrics, log=self.log,
            on_failure=self._storage_failed,
        )

    def _storage_failed(self, exc: LedgerError) -> None:
        """Consensus halted on a failed write: health checks and clients must see it."""
        self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    @property
    def write_failure(self) -> LedgerError | None:
        """Why this validator can no longer commit (None while it can)."""
        return None if self.driver is None else self.driver.failure

    def _make_server(self) -> tuple[grpc.Server, int]:
        from node.interceptors import MalformedRequests
        from node.service import LedgerService, PeerService

        size = self.config.limits.max_message_bytes + PEER_MESSAGE_HEADROOM
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc"),
            options=[("grpc.max_receive_message_length", size),
                     ("grpc.max_send_message_length", size)],
            maximum_concurrent_rpcs=1000,
            interceptors=[MalformedRequests()],
        )
        node_pb2_grpc.add_LedgerServicer_to_server(  # type: ignore[no-untyped-call]
            LedgerService(self), server)
        node_pb2_grpc.add_PeerServicer_to_server(  # type: ignore[no-untyped-call]
            PeerService(self), server)
        from node.privacy_service import PrivacyService

        node_pb2_grpc.add_PrivacyServicer_to_server(  # type: ignore[no-untyped-call]
            PrivacyService(self, self.deliveries), server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            node_pb2.DESCRIPTOR.services_by_name["Ledger"].full_name,
            node_pb2.DESCRIPTOR.services_by_name["Peer"].full_name,
            node_pb2.DESCRIPTOR.services_by_name["Privacy"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        creds = dynamic_server_credentials(*self._tls, self._server_pems)
        port = server.add_secure_port(self.config.node.listen, creds)
        if port == 0:
            raise LedgerError(f"cannot listen on {self.config.node.listen}")
        return server, port

    def _register_metrics(self) -> None:
        m = self.metrics
        m.gauge_from("shadowledger_mempool_records", "Records waiting in the mempool",
                     lambda: len(self.mempool))
        m.gauge_from("shadowledger_mempool_bytes", "Bytes waiting in the mempool",
                     lambda: self.mempool.size_bytes)
        m.gauge_from("shadowledger_peers_connected", "Peers with a live outgoing link",
                     lambda: len(self.peers.connected()))
        m.gauge_from("shadowledger_gossip_messages_sent",
                     "Record-gossip messages sent to peers since start (all links)",
                     lambda: sum(link.bulk_sent for link in self.peers.links.values()))
        m.gauge_from("shadowledger_gossip_batches_merged",
                     "Record batches sent inside another one because they queued up behind "
                     "it (since start, all links)",
                     lambda: sum(link.merged for link in self.peers.links.values()))
        m.height.set(self.ledger.head.height)
        m.tree_size.set(self.ledger.head.tree_size)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        self._started = True
        self.peers.start()
        if self.config.metrics.enabled:
            self.metrics.serve(self.config.metrics.listen)
        self.explorer = self._start_explorer()
        self._spawn(self._gossip_loop, "gossip")
        self._spawn(self._hello_loop, "hello")
        if self.driver is not None:
            self.driver.start()
            self.sync.at_start()
        else:
            self.sync.follow()
        if self.witnesses is not None:
            self.witnesses.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.log.info("node started", role=self.role, listen=self.config.node.listen,
                      height=self.ledger.head.height, tree_size=self.ledger.tree.size)

    def _start_explorer(self) -> ExplorerServer | None:
        """The read-only web explorer over this node's ledger, when [explorer] enables it."""
        section = self.config.explorer
        if not section.enabled:
            return None
        from node.explorer.views import Explorer

        explorer = Explorer(self.ledger, self.genesis_bytes)
        server = ExplorerServer(explorer, section.listen, section.max_concurrent).start()
        self.log.info("explorer serving", url=server.url)
        return server

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self.log.info("node stopping")
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace=1).wait(5)
        if self.explorer is not None:
            self.explorer.stop()
        self.sync.stop()
        if self.driver is not None:
            self.driver.stop()
        self.peers.stop()
        if self.witnesses is not None:
            self.witnesses.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self.storage.close()
        self.deliveries.close()
        self.log.info("node stopped", height=self.ledger.head.height)

    # --- peer traffic ------------------------------------------------------------------

    def gossip_record(self, raw: bytes) -> None:
        self._gossip.put(raw)

    def _gossip_loop(self) -> None:
        """Batch records accepted from clients and send them to every peer."""
        while not self._stopped.is_set():
            try:
                batch = [self._gossip.get(timeout=0.5)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + GOSSIP_LINGER_S
            while len(batch) < GOSSIP_BATCH:
                try:
                    batch.append(self._gossip.get(timeout=max(0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            msg = node_pb2.PeerMessage(records=node_pb2.RecordBatch(envelopes=batch))
            self.peers.broadcast(msg, bulk=True)

    def _hello_loop(self) -> None:
        """Tell peers our height now and then, so a node that fell behind notices.

        A validator whose key is in no set yet (it waits to be added) hears from nobody:
        the validators dial only each other. It pulls blocks from its configured peers
        instead, one peer every ``FOLLOWER_PULL_S``, so it is caught up when it joins."""
        turn = 0
        while not self._stopped.wait(1.0):
            hello = node_pb2.Hello(node=self.name, height=self.ledger.head.height)
            self.peers.broadcast(node_pb2.PeerMessage(hello=hello))
            turn += 1
            driver, names = self.driver, list(self.peers.links)
            if (driver is not None and not driver.tm.voting and names
                    and turn % FOLLOWER_PULL_S == 0):
                self.sync.trigger(names[(turn // FOLLOWER_PULL_S) % len(names)])

    def on_peer_message(self, sender: str, message: node_pb2.PeerMessage) -> None:
        """Check and dispatch one message from a peer; a bad one is logged and dropped."""
        kind = message.WhichOneof("kind")
        try:
            self._dispatch(sender, kind, message)
        except LedgerError as exc:
            self.log.warning("peer message refused", peer=sender, kind=kind, error=str(exc))

    def _dispatch(self, sender: str, kind: str | None, message: node_pb2.PeerMessage) -> None:
        driver = self.driver
        if kind == "records":
            if driver is not None:
                self._admit_gossiped(message.records.envelopes)
        elif kind == "checkpoint_signature":
            sig = message.checkpoint_signature
            self.checkpoints.add(sig.tree_size, sig.signature_line)
        elif kind == "hello":
            # Under load peers are often a block or two ahead; only a node that has really
            # fallen behind (or whose consensus is stuck) fetches blocks in bulk.
            behind = message.hello.height - self.ledger.head.height
            if behind > 3 or (behind > 1 and self.board.idle_for() > 2.0):
                self.sync.trigger(sender)
        elif kind == "commit":
            self._on_commit(sender, message.commit)
        elif driver is None:
            return  # an observer takes no part in consensus
        elif kind == "proposal":
            proposal = Proposal.from_bytes(message.proposal.proposal)
            verify_message(proposal, self.memberships.validator_set(proposal.height),
                           self.chain_id)
            driver.on_proposal(proposal, message.proposal.block)
        elif kind == "vote":
            vote = Vote.from_bytes(message.vote)
            # The set of the vote's height; for a height whose set is not known yet (after
            # a block not decided here), the latest known one: the state machine checks
            # buffered messages again against their height's set when it gets there.
            verify_message(vote, self.memberships.validator_set(vote.height), self.chain_id)
            driver.on_vote(vote)
        elif kind == "block_request":
            req = message.block_request
            driver.on_block_request(sender, req.height, req.block_id)
        elif kind == "block":
            driver.on_block(message.block.height, message.block.block)

    def _admit_gossiped(self, raws: Sequence[bytes]) -> None:
        _, errors = self.mempool.add_gossiped(raws)
        for exc in errors:
            self.log.warning("peer gossiped a bad record", error=str(exc))

    def _on_commit(self, sender: str, commit: node_pb2.CommittedBlock) -> None:
        cert = CommitCertificate.from_bytes(commit.certificate)
        head = self.ledger.head.height
        if cert.height <= head:
            return
        if cert.height > head + 1 or self.driver is None:
            # The set of a height further ahead may not be known here yet: the catch-up
            # checks each block's certificate with its own height's set.
            self.sync.trigger(sender)
            return
        check_certificate(cert, self.memberships.validator_set(cert.height), self.chain_id)
        block = Block.from_bytes(commit.block, self.limits)
        if block.hash != cert.block_id:
            raise LedgerError("committed block does not match its certificate")
        self.driver.on_commit(cert, commit.block)

    # --- reads for the services --------------------------------------------------------

    def policy_view(self) -> PolicyView:
        """The sharing-policy state new records are admitted against: committed plus
        decided-but-not-yet-written blocks."""
        if self.driver is not None:
            return self.driver.app.policy_view()
        return self.policy.view()

    def committed_block(self, height: int) -> node_pb2.CommittedBlock:
        block = self.ledger.block(height)
        return node_pb2.CommittedBlock(
            block=block.to_bytes(),
            certificate=self.ledger.certificate(height) or b"",
            checkpoint=self.ledger.checkpoint(block.header.tree_size) or b"",
        )

    def wait_height(self, height: int, timeout: float) -> bool:
        return self.board.wait_height(height, timeout)


def _peer_of_validator(membership: Membership) -> dict[bytes, str]:
    """Validator key -> the agency (peer link name) of the node holding it."""
    return {v.key.public_key: v.agency for v in membership.validators if v.agency}

"""Catch-up: fetch committed blocks from a peer, verify them, apply them.

A validator that was down or joins late, and every observer, streams blocks with their
commit certificates from a peer (``Peer.GetBlocks``). Each block is checked before it is
applied: the certificate must carry precommits of a quorum of the validators of the
block's height (the membership in force there, which governance may have changed) for
exactly this block, every record's signature must verify, and the block must extend the
local chain with a tree root that matches its records (``Ledger.commit_block``).
A peer that serves anything else is dropped and another one is tried.

State sync: a node ``consensus.state_sync_gap`` or more blocks behind does not re-check record
signatures of blocks under a verified certificate (2f+1 validators checked them before
precommitting); it still checks every certificate, chain link and tree root. Either way
the sharing-policy state is derived from the blocks' records and header times, exactly as
live commits derive it, and written in each block's transaction (ledger/policy.py).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import grpc

from consensus.certificate import CommitCertificate, check_certificate
from ledger.blocks import Block
from ledger.errors import LedgerError, VerificationError
from proto import node_pb2, node_pb2_grpc

if TYPE_CHECKING:
    from node.node import Node


class BlockSync:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.log = node.log
        self.gap = node.config.consensus.state_sync_gap
        self._lock = threading.Lock()
        self._running = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def trigger(self, peer: str) -> None:
        """Catch up from ``peer`` in the background, unless already catching up."""
        with self._lock:
            if self._running or self._stopped.is_set():
                return
            self._running = True
        self._thread = threading.Thread(target=self._catch_up, args=(peer,), daemon=True,
                                        name="catch-up")
        self._thread.start()

    def at_start(self) -> None:
        """A (re)starting validator asks its peers how far they are and catches up first."""
        threading.Thread(target=self._probe_peers, daemon=True, name="start-sync").start()

    def _probe_peers(self) -> None:
        self.node.peers.wait_connected(len(self.node.peers.links), timeout=3.0)
        best, best_height = None, self.node.ledger.head.height + 1
        for name, link in self.node.peers.links.items():
            channel = link.channel()
            try:
                stub: Any = node_pb2_grpc.LedgerStub(channel)  # type: ignore[no-untyped-call]
                height = stub.GetStatus(node_pb2.StatusRequest(), timeout=3).height
            except grpc.RpcError:
                continue
            finally:
                channel.close()
            if height > best_height:
                best, best_height = name, height
        if best is not None:
            self.trigger(best)

    def follow(self) -> None:
        """Observers: stay subscribed to the validators' committed blocks, forever."""
        with self._lock:
            self._running = True
        self._thread = threading.Thread(target=self._follow, daemon=True, name="follow")
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _catch_up(self, peer: str) -> None:
        try:
            applied, state_sync = self._stream(peer, follow=False)
            driver = self.node.driver
            if applied and driver is not None:
                driver.call(driver.restart_at_head)
            self.log.info("caught up", peer=peer, blocks=applied, state_sync=state_sync,
                          height=self.node.ledger.head.height)
        except (grpc.RpcError, LedgerError) as exc:
            self.log.warning("catch-up failed", peer=peer, error=str(exc)[:300])
        finally:
            with self._lock:
                self._running = False

    def _follow(self) -> None:
        peers = list(self.node.peers.links)
        turn = 0
        while not self._stopped.is_set() and peers:
            peer = peers[turn % len(peers)]
            turn += 1
            try:
                self._stream(peer, follow=True)
            except (grpc.RpcError, LedgerError) as exc:
                if not self._stopped.is_set():
                    self.log.info("follow stream ended", peer=peer, error=str(exc)[:200])
            self._stopped.wait(0.5)

    def _stream(self, peer: str, follow: bool) -> tuple[int, bool]:
        """Apply blocks streamed from ``peer``; (blocks applied, whether by state sync)."""
        link = self.node.peers.links.get(peer)
        if link is None:
            return 0, False
        channel = link.channel()
        stub: Any = node_pb2_grpc.PeerStub(channel)  # type: ignore[no-untyped-call]
        applied, state_sync = 0, False
        try:
            status: Any = node_pb2_grpc.LedgerStub(channel)  # type: ignore[no-untyped-call]
            peer_height = status.GetStatus(node_pb2.StatusRequest(), timeout=10).height
            request = node_pb2.BlocksRequest(from_height=self.node.ledger.head.height + 1,
                                             follow=follow)
            responses = stub.GetBlocks(request)
            for committed in responses:
                if self._stopped.is_set():
                    responses.cancel()
                    break
                # State sync: far behind, the quorum certificate vouches for signatures.
                far = peer_height - self.node.ledger.head.height >= self.gap
                state_sync = state_sync or far
                self._apply(committed, check_signatures=not far)
                applied += 1
        finally:
            channel.close()
        return applied, state_sync

    def _apply(self, committed: node_pb2.CommittedBlock, check_signatures: bool = True) -> None:
        node = self.node
        block = Block.from_bytes(committed.block, node.limits)
        cert = CommitCertificate.from_bytes(committed.certificate)
        if cert.height != block.header.height or cert.block_id != block.hash:
            raise VerificationError("certificate does not name this block")
        if block.header.height <= node.ledger.head.height:
            return  # consensus got there first
        if block.header.height > node.ledger.head.height + 1:
            raise VerificationError(f"peer sent block {block.header.height}, expected "
                                    f"{node.ledger.head.height + 1}")
        # Blocks apply in order, so the membership of this height is known (committed).
        membership = node.memberships.at(block.header.height)
        check_certificate(cert, node.memberships.validator_set(block.header.height),
                          node.chain_id)
        keyring = None if membership.hash == node.memberships.current().hash else (
            membership.keyring())
        checked = node.mempool.verify_for_block(block.envelopes, check_signatures, keyring)
        ids = [rid for _, rid in checked]

        def commit() -> None:
            if block.header.height != node.ledger.head.height + 1:
                return  # consensus got there first
            started = time.perf_counter()
            # The policy state is derived from the records themselves (state sync skips
            # only their signatures), in the same transaction as the block.
            policy = node.policy.changes_for(block.header.height, block.envelopes,
                                             block.header.time_ms,
                                             tree_size=block.header.tree_size)
            node.ledger.commit_block(block, committed.certificate, record_ids=ids,
                                     leaf_hashes=[leaf for leaf, _ in checked], policy=policy)
            node.policy.absorb(policy)
            node.memberships.refresh()
            node.mempool.remove(ids, [leaf for leaf, _ in checked])
            node.board.committed(block, node.ledger.head.tree_size, ids)
            node.metrics.block_committed(block, time.perf_counter() - started)
            if committed.checkpoint:
                self._offer_checkpoint(committed.checkpoint, block.header.tree_size)
            node.checkpoints.sign_and_share(block.header.tree_size)

        if node.driver is None:
            commit()
        else:
            node.driver.call(commit)

    def _offer_checkpoint(self, note: bytes, size: int) -> None:
        """Feed the signature lines of a peer's checkpoint to our collector (each checked)."""
        _text, _, lines = note.decode("utf-8", "replace").rpartition("\n\n")
        for line in lines.split("\n"):
            if line:
                self.node.checkpoints.add(size, line)

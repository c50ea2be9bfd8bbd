"""Outgoing links to the other nodes: one long-lived mTLS gRPC stream per peer.

Each link has a bounded send queue and a thread that (re)connects with backoff and
streams queued messages. Consensus tolerates lost messages (its retry timer resends), so a
full queue drops the oldest message instead of blocking the consensus thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from proto import node_pb2

GOSSIP_METHOD = "/shadowledger.v1.Peer/Gossip"


@dataclass(frozen=True)
class PeerAddress:
    name: str
    """The peer's agency name (as in genesis)."""
    address: str
    server_name: str
    """The TLS name in the peer's certificate (checked against the pinned certificates)."""


class PeerLink:
    """Streams ``PeerMessage``s to one peer, reconnecting forever until stopped."""

    def __init__(
        self,
        peer: PeerAddress,
        make_channel: Callable[[PeerAddress], grpc.Channel],
        log: Any,
        max_queue: int = 20_000,
        max_bulk_bytes: int = 64 << 20,
    ) -> None:
        self.peer = peer
        self._make_channel = make_channel
        self._log = log
        # Two lanes: consensus messages never wait behind bulk record gossip.
        self._urgent: deque[bytes] = deque()
        self._bulk: deque[bytes] = deque()
        self._max_queue = max_queue
        self._max_bulk_bytes = max_bulk_bytes
        self._bulk_bytes = 0
        self._ready = threading.Condition()
        self._stopped = threading.Event()
        self.connected = False
        self.dropped = 0
        self._channel: grpc.Channel | None = None
        self._thread = threading.Thread(target=self._run, name=f"peer-{peer.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, message: bytes, bulk: bool = False) -> None:
        """Queue a serialized ``PeerMessage`` (serialized once for all peers).

        Bulk gossip to a peer that is not connected is dropped, not queued: the records
        are in our mempool and reach the peer in blocks (or by catch-up) when it is back.
        """
        if bulk and not self.connected:
            self.dropped += 1
            return
        with self._ready:
            # Full lanes drop their oldest: consensus resends, gossip is best effort.
            if bulk:
                self._bulk_bytes += len(message)
                while self._bulk and (len(self._bulk) >= self._max_queue
                                      or self._bulk_bytes > self._max_bulk_bytes):
                    self._bulk_bytes -= len(self._bulk.popleft())
                    self.dropped += 1
                self._bulk.append(message)
            else:
                if len(self._urgent) >= self._max_queue:
                    self._urgent.popleft()
                    self.dropped += 1
                self._urgent.append(message)
            self._ready.notify()

    def stop(self) -> None:
        self._stopped.set()
        with self._ready:
            self._ready.notify_all()
        if self._channel is not None:
            self._channel.close()
        self._thread.join(timeout=5)

    def channel(self) -> grpc.Channel:
        """A channel to this peer for unary or server-streaming calls (catch-up)."""
        return self._make_channel(self.peer)

    def _messages(self) -> Iterator[bytes]:
        while True:
            with self._ready:
                while not (self._urgent or self._bulk or self._stopped.is_set()):
                    self._ready.wait(0.5)
                if self._stopped.is_set():
                    return
                if self._urgent:
                    item = self._urgent.popleft()
                else:
                    item = self._bulk.popleft()
                    self._bulk_bytes -= len(item)
            yield item

    def _run(self) -> None:
        backoff = 0.05
        while not self._stopped.is_set():
            self._channel = self._make_channel(self.peer)
            # Messages arrive serialized: no request serializer, bytes go out as they are.
            gossip = self._channel.stream_unary(
                GOSSIP_METHOD, response_deserializer=node_pb2.GossipAck.FromString
            )
            try:
                grpc.channel_ready_future(self._channel).result(timeout=2)
                self.connected = True
                backoff = 0.05
                self._log.info("peer connected", peer=self.peer.name)
                gossip(self._messages())
            except (grpc.RpcError, grpc.FutureTimeoutError) as exc:
                if not self._stopped.is_set() and self.connected:
                    self._log.warning("peer link lost", peer=self.peer.name, error=str(exc)[:200])
            finally:
                self.connected = False
                self._channel.close()
            self._stopped.wait(backoff)
            backoff = min(backoff * 2, 2.0)


class PeerNetwork:
    """All outgoing links of a node."""

    def __init__(self, links: Sequence[PeerLink]) -> None:
        self.links = {link.peer.name: link for link in links}
        """Replaced, never mutated, when links come and go (readers iterate a snapshot)."""
        self._change = threading.Lock()

    def add(self, link: PeerLink, start: bool) -> None:
        """A new peer (a validator that joined by governance); ``start`` it if we run."""
        with self._change:
            if link.peer.name in self.links:
                return
            self.links = {**self.links, link.peer.name: link}
        if start:
            link.start()

    def remove(self, name: str) -> None:
        """Close the link to a peer that left the validator set."""
        with self._change:
            link = self.links.get(name)
            if link is None:
                return
            self.links = {n: lk for n, lk in self.links.items() if n != name}
        link.stop()

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    def stop(self) -> None:
        for link in self.links.values():
            link.stop()

    def broadcast(self, message: node_pb2.PeerMessage, bulk: bool = False) -> None:
        data = message.SerializeToString()
        for link in self.links.values():
            link.send(data, bulk)

    def send(self, name: str, message: node_pb2.PeerMessage) -> None:
        link = self.links.get(name)
        if link is not None:
            link.send(message.SerializeToString())

    def connected(self) -> list[str]:
        return sorted(name for name, link in self.links.items() if link.connected)

    def wait_connected(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.connected()) >= count:
                return True
            time.sleep(0.05)
        return False

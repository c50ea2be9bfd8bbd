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
MERGE_BYTES = 1 << 20
"""Queued record batches to one peer are sent as one message up to this size (well under
``limits.max_message_bytes``, 4 MiB by default; a single batch larger than this goes as
it is)."""


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
        self.bulk_sent = 0
        """Bulk messages handed to gRPC (each possibly several merged)."""
        self.merged = 0
        """Bulk messages sent inside an earlier one (``_take_bulk``)."""
        self._channel: grpc.Channel | None = None
        self._thread = threading.Thread(target=self._run, name=f"peer-{peer.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, message: bytes, bulk: bool = False) -> None:
        """Queue a serialized ``PeerMessage`` (serialized once for all peers).

        Bulk gossip to a peer that is not connected is dropped, not queued: the records
        are in our mempool and reach the peer in blocks (or by catch-up) when it is back.
        Bulk messages must be record batches: queued ones are merged (``_take_bulk``).
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
                item = self._urgent.popleft() if self._urgent else self._take_bulk()
            yield item

    def _take_bulk(self) -> bytes:
        """The oldest bulk message, merged with those queued behind it (up to
        ``MERGE_BYTES``). Called with ``_ready`` held.

        Bulk messages are record batches (``PeerMessage.records``), and protobuf parses
        concatenated messages as one whose repeated fields are appended: the merge is a
        byte join, with no parse. It happens only when messages queue up, i.e. when this
        link's thread ran late (a busy node): a busy node then sends, and its peers
        receive, fewer and larger messages, each of which costs a thread hand-off and
        gRPC's per-message work on both sides."""
        parts = [self._bulk.popleft()]
        size = len(parts[0])
        while self._bulk and size + len(self._bulk[0]) <= MERGE_BYTES:
            parts.append(self._bulk.popleft())
            size += len(parts[-1])
        self._bulk_bytes -= size
        self.merged += len(parts) - 1
        self.bulk_sent += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

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

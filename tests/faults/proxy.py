"""TCP proxies between nodes, controlled by the test: partitions, slow links, heal.

Every directed link ``a -> b`` (the connections node ``a`` opens to node ``b``: its gossip
stream and its catch-up calls) goes through its own ``LinkProxy`` on 127.0.0.1. The
proxy forwards bytes as they are (TLS stays end to end; peers check the server name, not
the address), so the nodes cannot tell it is there, until the test says:

- ``cut()``: close every open connection and refuse new ones (a partition);
- ``slow(delay_s, bytes_per_s)``: hold each chunk ``delay_s`` and pace the rest (a slow link);
- ``heal()``: forward normally again.

Threads, not asyncio: the harness and the tests are synchronous, and a link carries at
most a few connections.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass(frozen=True)
class LinkState:
    cut: bool = False
    delay_s: float = 0.0
    bytes_per_s: int = 0
    """0 = unlimited."""


class LinkProxy:
    """Listens on 127.0.0.1 and forwards every connection to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], name: str = "") -> None:
        self.upstream = upstream
        self.name = name
        self.state = LinkState()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)  # close() from another thread does not wake accept()
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = threading.Event()
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy-{name}",
                                        daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- control -----------------------------------------------------------------------

    def cut(self) -> None:
        self.state = LinkState(cut=True)
        self._drop_all()

    def slow(self, delay_s: float, bytes_per_s: int = 0) -> None:
        self.state = LinkState(delay_s=delay_s, bytes_per_s=bytes_per_s)

    def heal(self) -> None:
        self.state = LinkState()

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        self._drop_all()
        self._thread.join(timeout=5)

    def _drop_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            _close(conn)

    # --- forwarding --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self.state.cut:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            self.accepted += 1
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                state = self.state
                if state.cut:
                    break
                if state.delay_s:
                    time.sleep(state.delay_s)
                if state.bytes_per_s:
                    time.sleep(len(data) / state.bytes_per_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class ProxyMesh:
    """One ``LinkProxy`` per directed pair of nodes."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.links: dict[tuple[str, str], LinkProxy] = {}
        for a in addresses:
            for b, address in addresses.items():
                if a != b:
                    host, _, port = address.rpartition(":")
                    self.links[(a, b)] = LinkProxy((host, int(port)), f"{a}->{b}")

    def address(self, source: str, target: str) -> str:
        return self.links[(source, target)].address

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between nodes of different groups (nodes not named: group of their
        own); links inside a group are healed."""
        group_of: dict[str, int] = {}
        for i, group in enumerate(groups):
            for name in group:
                group_of[name] = i
        for (a, b), link in self.links.items():
            if group_of.get(a, f"alone:{a}") == group_of.get(b, f"alone:{b}"):
                link.heal()
            else:
                link.cut()

    def isolate(self, name: str) -> None:
        for (a, b), link in self.links.items():
            if name in (a, b):
                link.cut()

    def slow(self, name: str, delay_s: float, bytes_per_s: int = 0) -> None:
        """Every link to and from ``name`` becomes slow."""
        for (a, b), link in self.links.items():
            if name in (a, b):
                link.slow(delay_s, bytes_per_s)

    def heal(self) -> None:
        for link in self.links.values():
            link.heal()

    def close(self) -> None:
        for link in self.links.values():
            link.close()

    def cut_count(self) -> int:
        return sum(link.state.cut for link in self.links.values())

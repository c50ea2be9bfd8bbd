"""etcd helpers for the side-by-side cluster benchmark (bench/bench_cluster.py).

- ``ensure_etcd()`` finds the ``etcd`` binary, installing Debian's ``etcd-server`` with
  apt-get if it is missing (the benchmark machine runs as root);
- ``EtcdCluster`` runs a 3-member cluster on 127.0.0.1 (distinct client and peer ports,
  data dirs under a folder the caller owns, etcd's default durable settings: the WAL is
  fsynced before a put is acknowledged);
- ``put_load`` drives it from one worker process with many keep-alive HTTP/1.1
  connections to the v3 JSON gateway (``POST /v3/kv/put``, base64 key and value), one
  request in flight per connection, on one asyncio event loop.

The client is a minimal HTTP/1.1 client on asyncio streams: it writes the request in one
``write`` and reads the status line, headers and a Content-Length or chunked body. It does
the same work as ``http.client`` with keep-alive, without one thread per connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ETCD_PACKAGE = "etcd-server"
MEMBERS = 3
HOST = "127.0.0.1"


class EtcdError(RuntimeError):
    """etcd could not be installed, started or used."""


def ensure_etcd() -> str:
    """Path of the ``etcd`` binary; ``apt-get install -y etcd-server`` if it is missing."""
    found = shutil.which("etcd") or next(
        (p for p in ("/usr/bin/etcd", "/usr/local/bin/etcd") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise EtcdError("etcd is not installed and apt-get is not available; install etcd"
                        " (3.4 or later) and put it on PATH")
    if os.geteuid() != 0:
        raise EtcdError(f"etcd is not installed; run `sudo apt-get install -y {ETCD_PACKAGE}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", ETCD_PACKAGE]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    found = shutil.which("etcd") or ("/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK)
                                     else None)
    if result.returncode != 0 or found is None:
        raise EtcdError(f"`{' '.join(install)}` failed (exit {result.returncode}):"
                        f" {result.stderr.strip()[-800:]}")
    return found


def etcd_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    for line in out.stdout.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"


@dataclass
class EtcdCluster:
    """A 3-member etcd cluster on loopback; use as a context manager (always stopped)."""

    binary: str
    folder: Path
    ports: list[tuple[int, int]]
    """(client port, peer port) per member."""
    members: list[EtcdMember] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.members = [
            EtcdMember(f"m{i}", c, p, self.folder / f"m{i}.etcd", self.folder / f"m{i}.log")
            for i, (c, p) in enumerate(self.ports)
        ]

    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def pids(self) -> dict[str, int]:
        return {m.name: m.proc.pid for m in self.members if m.proc is not None}

    def start(self, timeout: float = 60.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            args = [
                self.binary, "--name", m.name, "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"bench-{os.getpid()}",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
            ]
            log = m.log_path.open("ab")
            m.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            log.close()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for m in self.members:
            while True:
                if m.proc is not None and m.proc.poll() is not None:
                    raise EtcdError(f"etcd member {m.name} exited ({m.proc.returncode}):\n"
                                    + tail(m.log_path))
                try:
                    with urllib.request.urlopen(f"{m.client_url}/health", timeout=2) as r:
                        if json.loads(r.read()).get("health") == "true":
                            break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise EtcdError(f"etcd member {m.name} not healthy within {timeout:.0f} s:\n"
                                    + tail(m.log_path))
                time.sleep(0.2)

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members:
            if m.proc is None:
                continue
            try:
                m.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(timeout=15)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log at {path}: {exc})"


def put_body(key: bytes, value: bytes) -> bytes:
    return json.dumps({"key": base64.b64encode(key).decode(),
                       "value": base64.b64encode(value).decode()}).encode()


def put_request(host_port: str, key: bytes, value: bytes) -> bytes:
    body = put_body(key, value)
    head = (f"POST /v3/kv/put HTTP/1.1\r\nHost: {host_port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response: (status, body); Content-Length or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise EtcdError(f"malformed status line: {lines[0][:100]!r}")
    status = int(parts[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    raise EtcdError(f"response without length: {head!r}")


def put_once(client_url: str, key: bytes, value: bytes, timeout: float = 10.0) -> dict[str, object]:
    """A single put with urllib (checks the gateway path works before the timed run)."""
    req = urllib.request.Request(f"{client_url}/v3/kv/put", data=put_body(key, value),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        doc: dict[str, object] = json.loads(r.read())
    return doc


@dataclass
class PutResult:
    send_times: list[float] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    errors: int = 0
    last_error: str = ""


async def _connection(
    host: str, port: int, items: asyncio.Queue[tuple[bytes, bytes, float] | None],
    result: PutResult, stop_at: float, timeout: float,
) -> None:
    """One keep-alive connection doing one put at a time until ``stop_at`` or no items."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    host_port = f"{host}:{port}"
    try:
        while True:
            item = await items.get()
            if item is None:
                return
            key, value, scheduled = item
            now = time.monotonic()
            if now >= stop_at:
                return
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
            sent = scheduled if scheduled > 0 else time.monotonic()
            writer.write(put_request(host_port, key, value))
            try:
                status, body = await asyncio.wait_for(read_response(reader), timeout)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError,
                    EtcdError) as exc:
                result.errors += 1
                result.last_error = f"{type(exc).__name__}: {exc}"
                return
            if status != 200 or b'"header"' not in body:
                result.errors += 1
                result.last_error = f"HTTP {status}: {body[:200]!r}"
                continue
            result.send_times.append(sent)
            result.ack_times.append(time.monotonic())
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _put_load(client_url: str, values: list[tuple[bytes, bytes]], connections: int,
                    start_at: float, duration: float, rate: float, timeout: float) -> PutResult:
    host, _, port = client_url.removeprefix("http://").rpartition(":")
    result = PutResult()
    items: asyncio.Queue[tuple[bytes, bytes, float] | None] = asyncio.Queue()
    stop_at = start_at + duration
    for i, (key, value) in enumerate(values):
        items.put_nowait((key, value, start_at + i / rate if rate > 0 else 0.0))
    for _ in range(connections):
        items.put_nowait(None)
    delay = start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    tasks = [asyncio.create_task(_connection(host, int(port), items, result, stop_at, timeout))
             for _ in range(connections)]
    done, _ = await asyncio.wait(tasks, timeout=duration + timeout + 30)
    for task in tasks:
        if task not in done:
            task.cancel()
        elif task.exception() is not None:
            result.errors += 1
            result.last_error = repr(task.exception())
    return result


def put_load(client_url: str, values: list[tuple[bytes, bytes]], connections: int,
             start_at: float, duration: float, rate: float = 0.0, timeout: float = 30.0
             ) -> PutResult:
    """Put ``values`` through ``connections`` keep-alive connections from ``start_at``
    (``time.monotonic()``) for ``duration`` seconds; closed loop if ``rate`` is 0, else
    open loop at ``rate`` puts/s (latency counted from each put's scheduled time)."""
    return asyncio.run(_put_load(client_url, values, connections, start_at, duration, rate,
                                 timeout))

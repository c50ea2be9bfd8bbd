"""The explorer over HTTP: read-only, GET/HEAD only, bounded, with strict security headers.

stdlib ``ThreadingHTTPServer`` in a thread of its own. Every answer is public ledger data
(what any auditor may read); nothing from the node's keys or config is reachable. Bounds:
URL length, query fields, page sizes (``views``), concurrent requests (beyond
``max_concurrent`` the server answers 503 at once) and a socket timeout per connection.
The page is a static HTML shell plus one script and one stylesheet served from this
package: no CDN, no inline script or style, so the Content-Security-Policy can forbid
everything else.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket as socket_module
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from socket import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ledger.errors import FormatError, LedgerError, StorageError
from node.explorer.views import Explorer, NotFound, Page
from node.logging_setup import get_logger

MAX_URL_CHARS = 2048
MAX_QUERY_FIELDS = 8
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ("Cache-Control", "no-store"),
)
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


@dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    body: bytes
    content_type: str
    filename: str | None = None


Query = dict[str, str]
Route = tuple[re.Pattern[str], Callable[[Explorer, re.Match[str], Query], Reply]]


def _json(doc: Any, status: HTTPStatus = HTTPStatus.OK) -> Reply:
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Reply(status, body, "application/json")


def _int(query: Query, name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 19:
        raise FormatError(f"query parameter {name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def _page(query: Query, limit: int) -> Page:
    return Page(_int(query, "offset", 0) or 0, _int(query, "limit", limit) or 0)


def _now_ms() -> int:
    return int(time.time() * 1000)


ROUTES: list[Route] = [
    (re.compile(r"/api/status"), lambda e, m, q: _json(e.status())),
    (re.compile(r"/api/checkpoint"), lambda e, m, q: _json(e.checkpoint())),
    (re.compile(r"/api/checkpoint/note"),
     lambda e, m, q: Reply(HTTPStatus.OK, e.checkpoint_note(), "text/plain; charset=utf-8",
                           "checkpoint.txt")),
    (re.compile(r"/api/blocks"),
     lambda e, m, q: _json(e.blocks(_int(q, "before", None), _int(q, "limit", 20) or 0))),
    (re.compile(r"/api/blocks/(\d{1,19})"),
     lambda e, m, q: _json(e.block(int(m[1]), _page(q, 100)))),
    (re.compile(r"/api/records/(\d{1,19})"), lambda e, m, q: _json(e.record(int(m[1])))),
    (re.compile(r"/api/records/(\d{1,19})/receipt"),
     lambda e, m, q: Reply(HTTPStatus.OK, e.receipt(int(m[1])), "text/plain; charset=utf-8",
                           f"record-{int(m[1])}.tlog-proof")),
    (re.compile(r"/api/records/(\d{1,19})/envelope"),
     lambda e, m, q: Reply(HTTPStatus.OK, e.envelope(int(m[1])), "application/octet-stream",
                           f"record-{int(m[1])}.bin")),
    (re.compile(r"/api/records/by-id/([0-9A-Za-z]{1,128})"),
     lambda e, m, q: _json(e.record(e.index_of(m[1].lower())))),
    (re.compile(r"/api/membership"), lambda e, m, q: _json(e.membership())),
    (re.compile(r"/api/membership/chain"),
     lambda e, m, q: Reply(HTTPStatus.OK, e.membership_chain(), "application/json",
                           "membership-chain.json")),
    (re.compile(r"/api/agreements"),
     lambda e, m, q: _json(e.agreements(_page(q, 100), _now_ms()))),
    (re.compile(r"/api/charts/records-per-day"),
     lambda e, m, q: _json(e.records_per_day(_int(q, "days", 14) or 0))),
    (re.compile(r"/api/charts/commit-latency"),
     lambda e, m, q: _json(e.commit_latency(_int(q, "blocks", 100) or 0))),
]


def answer(explorer: Explorer, target: str) -> Reply:
    """The reply to ``GET target``; every failure becomes a status and a clear message."""
    try:
        return _route(explorer, target)
    except NotFound as exc:
        return _json({"error": str(exc)}, HTTPStatus.NOT_FOUND)
    except FormatError as exc:
        return _json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
    except StorageError as exc:
        get_logger("explorer").error("store unreadable", error=str(exc))
        return _json({"error": f"the ledger store cannot be read: {exc}"},
                     HTTPStatus.SERVICE_UNAVAILABLE)
    except LedgerError as exc:
        get_logger("explorer").error("explorer failed", target=target, error=str(exc))
        return _json({"error": "internal error"}, HTTPStatus.INTERNAL_SERVER_ERROR)


def _route(explorer: Explorer, target: str) -> Reply:
    if len(target) > MAX_URL_CHARS:
        return _json({"error": f"URL longer than {MAX_URL_CHARS} characters"},
                     HTTPStatus.REQUEST_URI_TOO_LONG)
    parts = urlsplit(target)
    if parts.path in STATIC:
        name, content_type = STATIC[parts.path]
        body = resources.files("node.explorer").joinpath("static", name).read_bytes()
        return Reply(HTTPStatus.OK, body, content_type)
    query = _query(parts.query)
    for pattern, handler in ROUTES:
        match = pattern.fullmatch(parts.path)
        if match:
            return handler(explorer, match, query)
    raise NotFound(f"no page {parts.path!r}; the API is listed at /api/status and in README")


def _query(text: str) -> Query:
    try:
        fields = parse_qs(text, strict_parsing=False, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise FormatError(f"more than {MAX_QUERY_FIELDS} query parameters") from exc
    return {k: v[-1] for k, v in fields.items()}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "shadowledger-explorer"
    sys_version = ""
    timeout = 15
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._send(answer(self.server.explorer, self.path), head=False)

    def do_HEAD(self) -> None:
        self._send(answer(self.server.explorer, self.path), head=True)

    def _refuse(self) -> None:
        body = json.dumps({"error": f"{self.command} is not allowed: the explorer is"
                                    " read-only (GET, HEAD)"}).encode()
        self._send(Reply(HTTPStatus.METHOD_NOT_ALLOWED, body, "application/json"), head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def _send(self, reply: Reply, head: bool) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        if reply.status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        if reply.filename is not None:
            self.send_header("Content-Disposition", f'attachment; filename="{reply.filename}"')
        self.end_headers()
        if not head:
            self.wfile.write(reply.body)

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without TCP_NODELAY the second one waits
        # for the client's delayed ACK (~40 ms per answer on Linux).
        self.connection.setsockopt(socket_module.IPPROTO_TCP, socket_module.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: page views are not ledger events (errors are logged apart)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], explorer: Explorer, max_concurrent: int):
        self.explorer = explorer
        if ":" in address[0]:
            self.address_family = socket_module.AF_INET6
        self._slots = threading.BoundedSemaphore(max_concurrent)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _busy(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _busy(request: socket) -> None:
    body = b'{"error":"the explorer is busy; retry shortly"}'
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
    with contextlib.suppress(OSError):
        request.sendall(head.encode() + body)


class ExplorerServer:
    """The explorer on ``listen`` (``host:port``; port 0 picks a free one), in a thread."""

    def __init__(self, explorer: Explorer, listen: str, max_concurrent: int = 16) -> None:
        host, _, port = listen.rpartition(":")
        self._server = _Server((host.strip("[]") or "127.0.0.1", int(port)), explorer,
                               max_concurrent)
        self._thread = threading.Thread(target=self._server.serve_forever, name="explorer",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> ExplorerServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

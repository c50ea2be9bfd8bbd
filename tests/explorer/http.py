"""A tiny HTTP client for explorer tests (127.0.0.1 only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(base: str, path: str, method: str = "GET") -> Response:
    assert base.startswith("http://127.0.0.1:"), base
    request = urllib.request.Request(base.rstrip("/") + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.headers, exc.read())


def get_json(base: str, path: str) -> Any:
    response = fetch(base, path)
    assert response.status == 200, (path, response.status, response.body[:300])
    assert response.headers["Content-Type"] == "application/json"
    return response.json()

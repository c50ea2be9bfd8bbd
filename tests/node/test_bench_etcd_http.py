"""bench/etcd.py's HTTP/1.1 reader: good answers parse, a garbled one is a counted error."""

from __future__ import annotations

import asyncio

import pytest

from bench.etcd import EtcdError, read_response


def _read(data: bytes) -> tuple[int, bytes]:
    async def run() -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_response(reader)

    return asyncio.run(run())


def test_content_length_and_chunked_answers() -> None:
    assert _read(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{\"a\"") == (200, b'{"a"')
    chunked = b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert _read(chunked) == (503, b"abc")


@pytest.mark.parametrize("head", [b"\r\n\r\n", b"garbage\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n"])
def test_a_garbled_status_line_is_an_etcd_error(head: bytes) -> None:
    with pytest.raises(EtcdError, match="malformed status line"):
        _read(head)

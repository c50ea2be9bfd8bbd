"""PeerLink's send queue: consensus first, queued record batches merged into one message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from node import peers
from node.peers import PeerAddress, PeerLink
from proto import node_pb2


def _link() -> PeerLink:
    def no_channel(peer: PeerAddress) -> Any:
        raise AssertionError("the queue is read without connecting")

    link = PeerLink(PeerAddress("b", "127.0.0.1:1", "node.b"), no_channel, log=None)
    link.connected = True  # bulk gossip is only queued for a connected peer
    return link


def _batch(*envelopes: bytes) -> bytes:
    return node_pb2.PeerMessage(
        records=node_pb2.RecordBatch(envelopes=list(envelopes))).SerializeToString()


def _take(messages: Iterator[bytes]) -> node_pb2.PeerMessage:
    return node_pb2.PeerMessage.FromString(next(messages))


def test_queued_record_batches_go_out_as_one_message_in_order() -> None:
    link = _link()
    link.send(_batch(b"r1", b"r2"), bulk=True)
    link.send(_batch(b"r3"), bulk=True)
    link.send(_batch(b"r4", b"r5"), bulk=True)
    merged = _take(link._messages())
    assert merged.WhichOneof("kind") == "records"
    assert list(merged.records.envelopes) == [b"r1", b"r2", b"r3", b"r4", b"r5"]
    assert (link.bulk_sent, link.merged, link._bulk_bytes) == (1, 2, 0)


def test_consensus_messages_go_first_and_are_never_merged() -> None:
    link = _link()
    link.send(_batch(b"r1"), bulk=True)
    vote1 = node_pb2.PeerMessage(vote=b"vote-1").SerializeToString()
    vote2 = node_pb2.PeerMessage(vote=b"vote-2").SerializeToString()
    link.send(vote1)
    link.send(vote2)
    link.send(_batch(b"r2"), bulk=True)
    messages = link._messages()
    assert [next(messages), next(messages)] == [vote1, vote2]
    assert list(_take(messages).records.envelopes) == [b"r1", b"r2"]


def test_a_merge_stops_at_merge_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "MERGE_BYTES", 250)
    link = _link()
    big = [bytes([i]) * 100 for i in range(4)]
    for envelope in big:
        link.send(_batch(envelope), bulk=True)
    messages = link._messages()
    first, second = _take(messages), _take(messages)
    assert list(first.records.envelopes) == big[:2]  # 2 x 103 bytes fit in 250, 3 do not
    assert list(second.records.envelopes) == big[2:]
    assert (link.bulk_sent, link.merged, link._bulk_bytes) == (2, 2, 0)


def test_one_batch_above_merge_bytes_goes_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "MERGE_BYTES", 50)
    link = _link()
    raw = _batch(b"x" * 100)
    link.send(raw, bulk=True)
    link.send(_batch(b"y"), bulk=True)
    messages = link._messages()
    assert next(messages) == raw
    assert list(_take(messages).records.envelopes) == [b"y"]

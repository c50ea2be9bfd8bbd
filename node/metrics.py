"""Prometheus metrics of one node, in a registry of its own (several nodes per process in
tests must not collide in the global registry)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ledger.blocks import Block

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("shadowledger_height", "Height of the last committed block", registry=r)
        self.tree_size = Gauge("shadowledger_tree_size", "Records in the ledger", registry=r)
        self.records = Counter("shadowledger_records_committed", "Records committed", registry=r)
        self.blocks = Counter("shadowledger_blocks_committed", "Blocks committed", registry=r)
        self.block_write = Histogram(
            "shadowledger_block_write_seconds", "Durable write of one block", registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.commit_latency = Histogram(
            "shadowledger_commit_latency_seconds",
            "From a client's submission to its acknowledgement under a final checkpoint",
            registry=r, buckets=LATENCY_BUCKETS,
        )
        self.submitted = Counter("shadowledger_records_submitted", "Records accepted from clients",
                                 registry=r)
        self.rejected = Counter("shadowledger_records_rejected", "Records refused, by reason",
                                ["reason"], registry=r)
        self.signature_checks = Counter(
            "shadowledger_record_signature_checks",
            "Record signatures this node checked (ideally one per record it ever saw)",
            registry=r)
        self.extra_rounds = Counter(
            "shadowledger_consensus_extra_rounds",
            "Rounds beyond the first that committed blocks needed (timeouts, late proposals)",
            registry=r)
        self.evidence = Counter("shadowledger_equivocations", "Equivocations detected",
                                registry=r)
        self.final_size = Gauge("shadowledger_final_checkpoint_size",
                                "Tree size of the latest final checkpoint", registry=r)

    def gauge_from(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        gauge = Gauge(name, doc, registry=self.registry)
        gauge.set_function(fn)

    def block_committed(self, block: Block, write_seconds: float) -> None:
        self.height.set(block.header.height)
        self.tree_size.set(block.header.tree_size)
        self.records.inc(len(block.envelopes))
        self.blocks.inc()
        self.block_write.observe(write_seconds)

    def serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)

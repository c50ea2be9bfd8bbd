"""Cluster benchmark: a real 4-validator network on 127.0.0.1, side by side with etcd.

    python -m bench.bench_cluster                 # full: 30 s per phase, 16 clients
    python -m bench.bench_cluster --quick         # smoke: 3 s per phase, 4 clients
    python -m bench.bench_cluster --soak          # + half-peak run of 600 s, RSS every 10 s
    python -m bench.bench_cluster --duration 60 --clients 16 --window 256 --no-etcd

What one run does (every process it starts is stopped at the end, all on 127.0.0.1):

1. ``node.localnet.generate`` writes a fresh 4-validator network into a temp dir (the
   generated auditor's observer node is not started, and is removed from the validators'
   peer lists so no queue fills up for it); the 4 validator processes are started and
   checked (status answers, 3 peers connected, one record per agency commits).
2. K client worker processes (``multiprocessing``, spawn) each load one agency's profile
   (worker i is agency i mod 4, talking to that agency's own node), sign their records
   *before the clock starts* (signing is the agencies' cost, not the ledger's), and open
   one ``LedgerClient.submit_many`` stream. Every ack is verified by the client as usual
   (final checkpoint signed by a quorum, consistency with the last one, index covered).
3. Phase ``peak``: closed loop, at most W records in flight per stream, for the duration.
   Throughput = acks received in the measured window (after a warm-up) / window length.
   Latency = submit (record handed to gRPC) to verified ack.
4. Phase ``half``: open loop at half the measured peak (each worker sends on a fixed
   schedule, not waiting for acks); latency is counted from each record's *scheduled*
   send time, so a client that falls behind its schedule shows up in the latency.
5. etcd: a 3-member cluster (``bench/etcd.py``), default durable settings, the same K
   workers x W in-flight puts (W keep-alive HTTP/1.1 connections per worker to the v3 JSON
   gateway, ``POST /v3/kv/put``, values of the same size as the ledger's envelopes),
   closed loop for throughput, then open loop at half its own peak and at the ledger's
   half-peak rate for latency.

Each node's RSS (``/proc/PID/status`` VmRSS) and CPU time (``/proc/PID/stat``) are
sampled; ``--soak`` replaces the ``half`` phase by a long one (default 600 s) with a sample
every 10 s, for the "memory stays flat" check.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import queue
import re
import resource
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NETWORK = "bench.shadow-ledger.example/v1"
AGENCIES = ("tax-agency", "social-security", "health-insurance", "statistics-office")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Settings:
    duration: float
    """Seconds per phase (including the warm-up)."""
    warmup: float
    """Seconds at the start of each phase not counted."""
    clients: int
    """K: client worker processes (concurrent streams / etcd connection groups)."""
    window: int
    """W: records in flight per stream in the closed loop (etcd: connections per worker)."""
    max_rate: float
    """Records/s the closed loop is provisioned (pre-signed) for; the machine's ceiling."""
    drain_timeout: float
    """After a phase, how long in-flight records may take to be acknowledged."""
    sample_interval: float
    """Seconds between RSS samples."""
    soak: float = 0.0
    """If > 0: the half-peak phase lasts this long (memory soak)."""
    etcd: bool = True
    etcd_sweep: tuple[int, ...] = ()
    """Extra etcd connections per worker to try (closed loop), besides W."""


FULL = Settings(duration=30.0, warmup=5.0, clients=16, window=256, max_rate=10_000,
                drain_timeout=60.0, sample_interval=2.0, etcd_sweep=(32, 8))
QUICK = Settings(duration=3.0, warmup=1.0, clients=4, window=64, max_rate=4_000,
                 drain_timeout=20.0, sample_interval=1.0)


def _emit(results: list[dict[str, Any]], **row: Any) -> None:
    results.append(row)
    print(json.dumps(row), flush=True)


# --- measurements ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rss_kib(pid: int) -> int | None:
    return rss_parts_kib(pid).get("VmRSS")


def rss_parts_kib(pid: int) -> dict[str, int]:
    """VmRSS and its parts: RssAnon (heap, stacks), RssFile (mapped files: LMDB pages,
    which the kernel can drop), RssShmem; empty if the process is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    except (OSError, IndexError, ValueError):
        return float("nan")


class RssSampler:
    """Samples VmRSS of named processes every ``interval`` seconds on a thread."""

    def __init__(self, pids: dict[str, int], interval: float) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: dict[str, list[tuple[float, dict[str, int]]]] = {n: [] for n in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        for name, pid in self.pids.items():
            parts = rss_parts_kib(pid)
            if "VmRSS" in parts:
                self.samples[name].append((now, parts))

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def summary(self, name: str, since: float = 0.0) -> dict[str, Any]:
        """First/last/max VmRSS (MiB) after ``since``; anon and file parts; a timeline
        (one point per minute) when the run is long."""
        points = [(t, p) for t, p in self.samples[name] if t >= since]
        if not points:
            return {"samples": 0}

        def mib(p: dict[str, int], key: str = "VmRSS") -> float:
            return round(p.get(key, 0) / 1024, 1)

        first, last = points[0][1], points[-1][1]
        out: dict[str, Any] = {
            "first_mib": mib(first), "last_mib": mib(last),
            "max_mib": max(mib(p) for _, p in points), "samples": len(points),
            "ratio_last_first": round(last["VmRSS"] / first["VmRSS"], 3),
            "anon_first_mib": mib(first, "RssAnon"), "anon_last_mib": mib(last, "RssAnon"),
            "anon_max_mib": max(mib(p, "RssAnon") for _, p in points),
            "file_first_mib": mib(first, "RssFile"), "file_last_mib": mib(last, "RssFile"),
        }
        if first.get("RssAnon"):
            out["anon_ratio_last_first"] = round(last.get("RssAnon", 0) / first["RssAnon"], 3)
        if points[-1][0] - points[0][0] > 120:
            t0, timeline, next_t = points[0][0], [], points[0][0]
            for t, p in points:
                if t >= next_t:
                    timeline.append([round(t - t0), mib(p), mib(p, "RssAnon")])
                    next_t = t + 60
            out["timeline_s_rss_anon_mib"] = timeline
        return out


def scrape(metrics_address: str) -> dict[str, float]:
    """The node's Prometheus counters we use (empty dict if unreachable)."""
    wanted = ("shadowledger_blocks_committed_total", "shadowledger_records_committed_total",
              "shadowledger_block_write_seconds_sum", "shadowledger_block_write_seconds_count",
              "shadowledger_commit_latency_seconds_sum",
              "shadowledger_commit_latency_seconds_count", "shadowledger_mempool_records",
              "shadowledger_record_signature_checks_total",
              "shadowledger_consensus_extra_rounds_total", "shadowledger_gossip_messages_sent",
              "shadowledger_gossip_batches_merged")
    try:
        with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name] = float(value)
    return out


# --- client workers ----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    kind: str
    """"shadowledger" or "etcd"."""
    profile: str = ""
    """shadowledger: the agency's client.toml."""
    etcd_url: str = ""
    value_size: int = 0
    sharing: tuple[str, ...] = ()
    """shadowledger: (agreement id hex, provider, recipient, dataset, purpose) to send
    sharing events under that agreement instead of anchors (bench/bench_policy.py)."""


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    duration: float
    rate: float
    """Records/s for this worker; 0 = closed loop."""
    window: int
    """Closed loop: records in flight; open loop: the cap on records in flight."""
    drain_timeout: float
    start_at: float = 0.0


@dataclass
class PhaseResult:
    worker: int
    phase: str
    sends: bytes = b""
    """array('d') of send (or scheduled) times, monotonic clock."""
    acks: bytes = b""
    """array('d') of ack times, same order."""
    sent: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    error: str = ""
    exhausted: bool = False
    cpu_seconds: float = 0.0
    behind_s: float = 0.0
    """Open loop: the most any send ran behind its schedule."""


def _make_records(profile_path: str, count: int, sharing: tuple[str, ...] = ()
                  ) -> list[tuple[bytes, bytes]]:
    """``count`` records signed by the profile's agency: (envelope bytes, record id).
    Anchors, or with ``sharing`` = (agreement id hex, provider, recipient, dataset,
    purpose) sharing events under that agreement."""
    from ledger.genesis import Genesis
    from ledger.records import sign_record
    from node.config import load_client_profile, read_signing_key
    from proto import ledger_pb2

    profile = load_client_profile(profile_path)
    assert profile.record_key is not None, "profile has no record key"
    key = read_signing_key(profile.record_key)
    network = Genesis.from_bytes(profile.genesis.read_bytes()).network
    out = []
    for _ in range(count):
        body = ledger_pb2.RecordBody(network=network, agency=profile.agency,
                                     nonce=os.urandom(16))
        if sharing:
            aid, provider, recipient, dataset, purpose = sharing
            body.sharing_event.CopyFrom(ledger_pb2.SharingEvent(
                provider=provider, recipient=recipient, dataset=dataset, purpose=purpose,
                agreement_id=bytes.fromhex(aid), subject_pseudonym=os.urandom(32),
                payload_commitment=os.urandom(32), payload_size=1024))
        else:
            body.anchor.CopyFrom(ledger_pb2.Anchor(source="registry/persons", version="1",
                                                   commitment=os.urandom(32)))
        env = sign_record(body, key)
        out.append((env.raw, env.record_id))
    return out


def _connect(profile_path: str) -> Any:
    """The agency's LedgerClient on its own node; trust kept in memory (no state file)."""
    from node.client import LedgerClient
    from node.config import load_client_profile

    p = load_client_profile(profile_path)
    return LedgerClient.connect(p.address, p.genesis.read_bytes(), p.tls_cert.read_bytes(),
                                p.tls_key.read_bytes(), p.tls_server_name, None,
                                p.max_message_bytes, timeout=30.0)


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker_main(spec: WorkerSpec, commands: Any, replies: Any) -> None:
    """A long-lived client worker: ("prepare", n) signs up to n unsent records,
    ("run", PhaseSpec) runs a phase and replies a PhaseResult, ("stop",) ends."""
    records: list[tuple[bytes, bytes]] = []
    next_record = 0
    client = None
    try:
        while True:
            command = commands.get(timeout=3600)
            if command[0] == "stop":
                return
            if command[0] == "prepare":
                need = command[1] - (len(records) - next_record)
                if spec.kind == "shadowledger":
                    if need > 0:
                        records += _make_records(spec.profile, need, spec.sharing)
                    if client is None:
                        client = _connect(spec.profile)
                elif need > 0:
                    records += [(os.urandom(16).hex().encode(), os.urandom(spec.value_size))
                                for _ in range(need)]
                replies.put(("ready", spec.index))
            elif command[0] == "run":
                phase: PhaseSpec = command[1]
                todo = records[next_record:]
                if spec.kind == "shadowledger":
                    result = _run_ledger_phase(spec, client, phase, todo)
                else:
                    result = _run_etcd_phase(spec, phase, todo)
                next_record += result.sent
                replies.put(("result", result))
    except Exception as exc:  # reported to the parent, which fails the run
        replies.put(("error", spec.index, f"{type(exc).__name__}: {exc}"))
    finally:
        if client is not None:
            client.close()


def _run_ledger_phase(spec: WorkerSpec, client: Any, phase: PhaseSpec,
                      records: list[tuple[bytes, bytes]]) -> PhaseResult:
    from node.client import Ack, ApiError

    result = PhaseResult(spec.index, phase.name)
    stop_at = phase.start_at + phase.duration
    in_flight = threading.Semaphore(phase.window)
    sent_at: dict[bytes, float] = {}
    sends, acks = array("d"), array("d")
    aborted = threading.Event()

    def requests() -> Iterator[bytes]:
        give_up = stop_at + phase.drain_timeout
        for i, (raw, rid) in enumerate(records):
            scheduled = phase.start_at + i / phase.rate if phase.rate else 0.0
            if phase.rate:
                if scheduled >= stop_at:
                    return
                delay = scheduled - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            while not in_flight.acquire(timeout=0.5):
                if aborted.is_set() or time.monotonic() > give_up:
                    return
            now = time.monotonic()
            if now >= stop_at or aborted.is_set():
                in_flight.release()
                return
            if phase.rate:
                result.behind_s = max(result.behind_s, now - scheduled)
            sent_at[rid] = scheduled if phase.rate else now
            result.sent = i + 1
            yield raw
        result.exhausted = True

    delay = phase.start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    cpu0 = _cpu_self()

    def abort() -> None:
        aborted.set()
        client.close()

    watchdog = threading.Timer(stop_at + phase.drain_timeout - time.monotonic(), abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        for response in client.submit_many(requests()):
            now = time.monotonic()
            in_flight.release()
            started = sent_at.pop(response.record_id, None)
            if isinstance(response, Ack):
                if started is not None:
                    sends.append(started)
                    acks.append(now)
            else:
                result.refused[response.code.name] += 1
    except ApiError as exc:
        result.error = ("drain timeout: " if aborted.is_set() else "") + str(exc)[:300]
    finally:
        watchdog.cancel()
    result.cpu_seconds = _cpu_self() - cpu0
    result.sends, result.acks = sends.tobytes(), acks.tobytes()
    if aborted.is_set():  # the channel is closed: reconnect for the next phase
        raise RuntimeError(f"worker {spec.index}: in-flight records not acknowledged within"
                           f" {phase.drain_timeout:.0f} s after the phase ({result.error})")
    return result


def _run_etcd_phase(spec: WorkerSpec, phase: PhaseSpec, values: list[tuple[bytes, bytes]]
                    ) -> PhaseResult:
    from bench.etcd import put_load

    cpu0 = _cpu_self()
    put = put_load(spec.etcd_url, values, phase.window, phase.start_at, phase.duration,
                   phase.rate, timeout=phase.drain_timeout)
    result = PhaseResult(spec.index, phase.name, array("d", put.send_times).tobytes(),
                         array("d", put.ack_times).tobytes(), sent=len(put.send_times))
    if put.errors:
        result.refused["error"] = put.errors
        result.error = put.last_error
    result.exhausted = len(put.send_times) + put.errors >= len(values)
    result.cpu_seconds = _cpu_self() - cpu0
    return result


class WorkerPool:
    """K long-lived worker processes; always stopped on exit."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        ctx = mp.get_context("spawn")
        self.replies: Any = ctx.Queue()
        self.commands: list[Any] = [ctx.Queue() for _ in specs]
        self.procs = [
            ctx.Process(target=worker_main, args=(s, q, self.replies), name=f"bench-{s.index}",
                        daemon=True)
            for s, q in zip(specs, self.commands, strict=True)
        ]

    def __enter__(self) -> WorkerPool:
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """Workers get "stop" after a normal run; after an error they are terminated."""
        if exc_type is None:
            for q in self.commands:
                with contextlib.suppress(Exception):
                    q.put(("stop",))
            deadline = time.monotonic() + 15
            for p in self.procs:
                p.join(timeout=max(0.1, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def _collect(self, kind: str, timeout: float) -> list[Any]:
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < len(self.procs):
            try:
                reply = self.replies.get(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            except queue.Empty:
                dead = [p.name for p in self.procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"client workers died: {dead}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(self.procs) - len(out)} client workers did not"
                                       f" answer '{kind}' within {timeout:.0f} s") from None
                continue
            if reply[0] == "error":
                raise RuntimeError(f"client worker {reply[1]} failed: {reply[2]}")
            out.append(reply[1])
        return out

    def prepare(self, per_worker: int, timeout: float) -> None:
        for q in self.commands:
            q.put(("prepare", per_worker))
        self._collect("prepare", timeout)

    def run(self, phases: list[PhaseSpec]) -> list[PhaseResult]:
        for q, phase in zip(self.commands, phases, strict=True):
            q.put(("run", phase))
        longest = max(p.start_at + p.duration + p.drain_timeout for p in phases)
        results: list[PhaseResult] = self._collect("run", longest - time.monotonic() + 60)
        return sorted(results, key=lambda r: r.worker)


@dataclass
class PhaseStats:
    throughput: float
    acked: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    refused: dict[str, int]
    errors: list[str]
    exhausted: int
    client_cpu_s: float
    behind_s: float
    timeline: list[list[float]]
    """Long phases: [minute start (s), acks/s, p50 ms, p99 ms] per minute."""


def phase_stats(results: list[PhaseResult], start_at: float, duration: float,
                warmup: float) -> PhaseStats:
    """Throughput over [start+warmup, end] by ack time; latency of records sent in it."""
    lo, hi = start_at + warmup, start_at + duration
    acked = 0
    latencies: list[float] = []
    refused: Counter[str] = Counter()
    for r in results:
        sends, acks = array("d"), array("d")
        sends.frombytes(r.sends)
        acks.frombytes(r.acks)
        acked += sum(1 for t in acks if lo <= t <= hi)
        latencies += [a - s for s, a in zip(sends, acks, strict=True) if lo <= s <= hi]
        refused.update(r.refused)
    timeline: list[list[float]] = []
    if hi - lo > 120:
        pairs = []
        for r in results:
            sends, acks = array("d"), array("d")
            sends.frombytes(r.sends)
            acks.frombytes(r.acks)
            pairs += [(s, a) for s, a in zip(sends, acks, strict=True) if lo <= s <= hi]
        for t in range(0, int(hi - lo), 60):
            window = [a - s for s, a in pairs if lo + t <= s < lo + t + 60]
            timeline.append([t, round(len(window) / 60), round(percentile(window, 50) * 1000),
                             round(percentile(window, 99) * 1000)])
    return PhaseStats(
        throughput=acked / (hi - lo), acked=acked,
        p50_ms=percentile(latencies, 50) * 1000, p99_ms=percentile(latencies, 99) * 1000,
        max_ms=max(latencies, default=float("nan")) * 1000, refused=dict(refused),
        errors=sorted({r.error for r in results if r.error}),
        exhausted=sum(r.exhausted for r in results),
        client_cpu_s=sum(r.cpu_seconds for r in results),
        behind_s=max((r.behind_s for r in results), default=0.0), timeline=timeline,
    )


# --- the shadowledger network --------------------------------------------------------------


def free_ranges(*counts: int) -> list[int]:
    """Base ports of disjoint free ranges of ``counts`` consecutive ports on 127.0.0.1."""
    from tests.integration.cluster import free_port_range

    for _ in range(20):
        bases = [free_port_range(c) for c in counts]
        spans = sorted((b, b + c) for b, c in zip(bases, counts, strict=True))
        if all(a[1] < b[0] for a, b in itertools.pairwise(spans)):
            return bases
    raise RuntimeError("could not find disjoint free port ranges on 127.0.0.1")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


class LedgerNetwork:
    """The 4 validators of a fresh local network, as processes; stopped on exit."""

    def __init__(self, folder: Path) -> None:
        from node.localnet import generate
        from tests.integration.cluster import Cluster

        base, metrics = free_ranges(5, 5)
        self.net = generate(folder, 4, base, NETWORK, datetime.now(UTC), os.urandom,
                            metrics_base_port=metrics)
        self.validators = self.net.validators
        observer = [n.agency for n in self.net.nodes if n.role == "observer"]
        for node in self.validators:  # the observer is not run: do not queue messages for it
            text = node.config_path.read_text()
            for name in observer:
                pattern = r'\n\[\[peers\]\]\nname = "' + re.escape(name) + r'"\naddress = "[^"]*"\n'
                text = re.sub(pattern, "\n", text)
            node.config_path.write_text(text)
        self.cluster = Cluster(self.net)

    def profile(self, agency: str) -> Path:
        return next(a.client_profile for a in self.net.agencies if a.name == agency)

    def log_path(self, agency: str) -> Path:
        return next(n.config_path.parent / "node.log" for n in self.validators
                    if n.agency == agency)

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.cluster.procs.items()}

    def __enter__(self) -> LedgerNetwork:
        try:
            for node in self.validators:
                self.cluster.start(node.agency)
            self.wait_ready(timeout=60.0)
        except BaseException:
            self.cluster.stop_all()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.stop_all()

    def _check_alive(self) -> None:
        for agency, proc in self.cluster.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"node {agency} exited with {proc.returncode}; tail of"
                                   f" {self.log_path(agency)}:\n{tail(self.log_path(agency))}")

    def wait_ready(self, timeout: float) -> None:
        """Every node answers and has its 3 peers; one record per agency commits."""
        deadline = time.monotonic() + timeout
        for node in self.validators:
            last = ""
            while True:
                self._check_alive()
                try:
                    with _connect(str(self.profile(node.agency))) as client:
                        client._timeout = 2.0
                        status = client.status()
                    if len(status.connected_peers) >= len(self.validators) - 1:
                        break
                    last = f"peers connected: {list(status.connected_peers)}"
                except Exception as exc:
                    last = str(exc)[:200]
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"node {node.agency} not ready within {timeout:.0f} s ({last}); tail of"
                        f" its log:\n{tail(self.log_path(node.agency))}")
                time.sleep(0.2)
        for node in self.validators:
            self._check_alive()
            raw, _ = _make_records(str(self.profile(node.agency)), 1)[0]
            with _connect(str(self.profile(node.agency))) as client:
                client._timeout = max(5.0, deadline - time.monotonic())
                client.submit(raw)

    def metrics(self) -> dict[str, dict[str, float]]:
        return {n.agency: scrape(n.metrics_address) for n in self.validators}


def _delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def _phase_row(stats: PhaseStats, clients: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "clients": clients, "acked": stats.acked,
        "latency_p50_ms": round(stats.p50_ms, 1), "latency_p99_ms": round(stats.p99_ms, 1),
        "latency_max_ms": round(stats.max_ms, 1), "refused": stats.refused,
        "errors": stats.errors, "workers_out_of_records": stats.exhausted,
        "client_cpu_s": round(stats.client_cpu_s, 1),
    }
    if stats.timeline:
        row["timeline_s_rate_p50_p99"] = stats.timeline
    return row


def _cpu_row(before: dict[str, float], pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU use per process over the phase, in cores (1.0 = one core busy)."""
    return {name: round((cpu_seconds(pid) - before[name]) / seconds, 2)
            for name, pid in pids.items()}


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, not idle or iowait) since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def _run_phase(pool: WorkerPool, name: str, clients: int, duration: float, rate: float,
               window: int, drain: float, pids: dict[str, int]
               ) -> tuple[list[PhaseResult], float, dict[str, float]]:
    """Run one phase on every worker; returns results, start time and CPU use in cores:
    per server process, ``clients`` (all workers), ``machine`` (every process) and
    ``others`` (machine minus this benchmark: load from anything else on the machine)."""
    start_at = time.monotonic() + 1.0
    cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
    busy0, self0 = machine_busy_seconds(), _cpu_self()
    phases = [PhaseSpec(name, duration, rate / clients if rate else 0.0, window, drain,
                        start_at) for _ in range(clients)]
    results = pool.run(phases)
    elapsed = max(0.001, time.monotonic() - start_at + 1.0)
    cpu = _cpu_row(cpu0, pids, elapsed)
    client_cores = sum(r.cpu_seconds for r in results) / elapsed
    machine = (machine_busy_seconds() - busy0) / elapsed
    own = sum(cpu.values()) + client_cores + (_cpu_self() - self0) / elapsed
    cpu.update(clients=round(client_cores, 2), machine=round(machine, 2),
               others=round(max(0.0, machine - own), 2))
    return results, start_at, cpu


def run_ledger(settings: Settings, folder: Path, results: list[dict[str, Any]]
               ) -> dict[str, Any]:
    """Peak and half-peak phases against shadowledger; returns figures etcd reuses."""
    s = settings
    k = s.clients
    with LedgerNetwork(folder) as network:
        pids = network.pids
        specs = [WorkerSpec(i, "shadowledger", profile=str(network.profile(AGENCIES[i % 4])))
                 for i in range(k)]
        idle_rss = {name: rss_kib(pid) for name, pid in pids.items()}
        with WorkerPool(specs) as pool, RssSampler(pids, s.sample_interval) as rss:
            per_worker = int(s.max_rate * s.duration / k) + s.window + 100
            t = time.monotonic()
            pool.prepare(per_worker, timeout=600)
            sign_s = time.monotonic() - t
            m0 = network.metrics()
            peak_results, start, cpu = _run_phase(pool, "peak", k, s.duration, 0.0, s.window,
                                                  s.drain_timeout, pids)
            m1 = network.metrics()
            peak = phase_stats(peak_results, start, s.duration, s.warmup)
            envelope_size = len(_make_records(specs[0].profile, 1)[0][0])
            first = network.validators[0].agency
            blocks = _delta(m1[first], m0[first], "shadowledger_blocks_committed_total")
            records = _delta(m1[first], m0[first], "shadowledger_records_committed_total")
            write_s = _delta(m1[first], m0[first], "shadowledger_block_write_seconds_sum")
            _emit(results, bench="cluster.throughput", impl="shadowledger",
                  value=round(peak.throughput), unit="records/s", mode="closed-loop",
                  window=s.window, in_flight=k * s.window, duration_s=s.duration,
                  warmup_s=s.warmup, envelope_bytes=envelope_size,
                  records_per_block=round(records / blocks, 1) if blocks else None,
                  blocks_per_s=round(blocks / (s.duration + 1), 2),
                  block_write_ms=round(1000 * write_s / blocks, 1) if blocks else None,
                  cpu_cores=cpu, presign_s=round(sign_s, 1), **_phase_row(peak, k))
            half_rate = peak.throughput / 2
            duration = s.soak or s.duration
            need = int(half_rate * duration / k) + s.window + 100
            pool.prepare(need, timeout=600)
            half_results, start, cpu = _run_phase(
                pool, "soak" if s.soak else "half", k, duration, half_rate,
                max(4 * s.window, int(half_rate / k * 10)), s.drain_timeout, pids)
            half = phase_stats(half_results, start, duration, s.warmup)
            row = _phase_row(half, k)
            for metric in ("p50", "p99"):
                _emit(results, bench=f"cluster.latency_{metric}", impl="shadowledger",
                      value=row[f"latency_{metric}_ms"], unit="ms", mode="open-loop",
                      offered_rate=round(half_rate), achieved_rate=round(half.throughput),
                      duration_s=duration, behind_schedule_max_s=round(half.behind_s, 3),
                      cpu_cores=cpu, **row)
        for name in pids:
            _emit(results, bench="cluster.rss", impl="shadowledger", node=name, pid=pids[name],
                  phase="soak" if s.soak else "half", interval_s=s.sample_interval,
                  idle_mib=round((idle_rss[name] or 0) / 1024, 1),
                  value=rss.summary(name, since=start + s.warmup).get("ratio_last_first"),
                  unit="last/first", **rss.summary(name, since=start + s.warmup))
    return {"peak": peak.throughput, "half_rate": half_rate, "envelope_bytes": envelope_size,
            "p50_ms": half.p50_ms, "p99_ms": half.p99_ms}


def run_etcd(settings: Settings, folder: Path, ledger: dict[str, Any],
             results: list[dict[str, Any]]) -> None:
    """etcd at the same K workers x W in flight; full mode adds fewer connections per
    worker (etcd's JSON gateway does better with fewer), and its best is reported too."""
    from bench.etcd import EtcdCluster, ensure_etcd, etcd_version, put_once

    s = settings
    k = s.clients
    binary = ensure_etcd()
    version = etcd_version(binary)
    client_base, peer_base = free_ranges(3, 3)
    ports = [(client_base + i, peer_base + i) for i in range(3)]
    with EtcdCluster(binary, folder, ports) as etcd:
        put_once(etcd.client_urls[0], b"bench/check", b"x")
        pids = etcd.pids
        specs = [WorkerSpec(i, "etcd", etcd_url=etcd.client_urls[i % 3],
                            value_size=ledger["envelope_bytes"]) for i in range(k)]
        with WorkerPool(specs) as pool, RssSampler(pids, s.sample_interval) as rss:
            started = time.monotonic()
            windows = [s.window] + [w for w in s.etcd_sweep if w < s.window]
            peaks: dict[int, float] = {}
            for window in windows:
                pool.prepare(int(50_000 * s.duration / k), timeout=600)
                res, start, cpu = _run_phase(pool, "peak", k, s.duration, 0.0, window,
                                             s.drain_timeout, pids)
                peak = phase_stats(res, start, s.duration, s.warmup)
                peaks[window] = peak.throughput
                _emit(results, bench="cluster.throughput", impl="etcd", version=version,
                      value=round(peak.throughput), unit="puts/s", mode="closed-loop",
                      same_in_flight_as_shadowledger=window == s.window, window=window,
                      in_flight=k * window, connections=k * window, duration_s=s.duration,
                      warmup_s=s.warmup, value_bytes=ledger["envelope_bytes"], cpu_cores=cpu,
                      **_phase_row(peak, k))
            same, best = peaks[s.window], max(peaks.values())
            _emit(results, bench="cluster.ratio", impl="shadowledger/etcd",
                  value=round(ledger["peak"] / same, 3) if same else None, unit="x",
                  shadowledger=round(ledger["peak"]), etcd=round(same), clients=k,
                  in_flight=k * s.window,
                  vs_etcd_best=round(ledger["peak"] / best, 3) if best else None,
                  etcd_best=round(best), etcd_best_in_flight=k * max(peaks, key=peaks.__getitem__))
            rates = [("half_own_peak", best / 2)]
            if s.etcd_sweep:
                rates.append(("shadowledger_half_rate", ledger["half_rate"]))
            for label, rate in rates:
                pool.prepare(int(rate * s.duration / k) + 100, timeout=600)
                res, start, cpu = _run_phase(pool, label, k, s.duration, rate, s.window,
                                             s.drain_timeout, pids)
                stats = phase_stats(res, start, s.duration, s.warmup)
                row = _phase_row(stats, k)
                for metric in ("p50", "p99"):
                    _emit(results, bench=f"cluster.latency_{metric}", impl="etcd",
                          value=row[f"latency_{metric}_ms"], unit="ms", mode="open-loop",
                          rate_basis=label, offered_rate=round(rate),
                          achieved_rate=round(stats.throughput), duration_s=s.duration,
                          cpu_cores=cpu, **row)
        for name, pid in pids.items():
            summary = rss.summary(name, since=started)
            _emit(results, bench="cluster.rss", impl="etcd", node=name, pid=pid,
                  phase="all", interval_s=s.sample_interval,
                  value=summary.get("ratio_last_first"), unit="last/first", **summary)


def run(quick: bool = False, duration: float | None = None, soak: bool = False,
        soak_duration: float = 600.0, clients: int | None = None, window: int | None = None,
        etcd: bool = True, keep_dir: Path | None = None) -> list[dict[str, Any]]:
    """Run the cluster benchmark; prints and returns one dict per JSON line."""
    base = QUICK if quick else FULL
    settings = Settings(
        duration=duration or base.duration,
        warmup=min(base.warmup, (duration or base.duration) / 3),
        clients=clients or base.clients, window=window or base.window,
        max_rate=base.max_rate, drain_timeout=base.drain_timeout,
        sample_interval=10.0 if soak else base.sample_interval,
        soak=soak_duration if soak else 0.0, etcd=etcd, etcd_sweep=base.etcd_sweep,
    )
    results: list[dict[str, Any]] = []
    _emit(results, bench="cluster.config", impl="shadowledger", cpus=os.cpu_count(),
          validators=4, **{k: list(v) if isinstance(v, tuple) else v
                           for k, v in asdict(settings).items()})
    with contextlib.ExitStack() as stack:
        if keep_dir is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cluster-")))
        else:
            tmp = keep_dir
        ledger = run_ledger(settings, tmp / "net", results)
        if settings.etcd:
            run_etcd(settings, tmp / "etcd", ledger, results)
    return results


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run (~1 min)")
    parser.add_argument("--duration", type=float, help="seconds per phase")
    parser.add_argument("--soak", action="store_true", help="long half-peak phase with RSS")
    parser.add_argument("--soak-duration", type=float, default=600.0)
    parser.add_argument("--clients", type=int, help="K client worker processes")
    parser.add_argument("--window", type=int, help="W records in flight per stream")
    parser.add_argument("--no-etcd", action="store_true", help="skip the etcd comparison")
    parser.add_argument("--keep-dir", type=Path,
                        help="write the networks here (a new folder) and keep them (node logs)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop everything started, as on Ctrl-C
    run(quick=args.quick, duration=args.duration, soak=args.soak,
        soak_duration=args.soak_duration, clients=args.clients, window=args.window,
        etcd=not args.no_etcd, keep_dir=args.keep_dir)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()

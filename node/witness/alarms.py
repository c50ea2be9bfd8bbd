"""Split-view alarms: evidence files, an error log line and a Prometheus counter.

An evidence file holds both signed checkpoints (``ledger.splitview`` format), so anyone
can confirm it offline with ``shadowledger audit verify-split-view``. Files are written
atomically (temporary file, fsync, rename) and named after the hash of the checkpoint
that was refused, so a log repeating the same lie does not fill the disk.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from ledger.splitview import EvidenceFile
from ledger.witness import Evidence


def write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Alarms:
    def __init__(self, folder: Path, witness_vkey: str, registry: CollectorRegistry,
                 log: Any) -> None:
        self.folder = folder
        self.witness_vkey = witness_vkey
        self.log = log
        self.counter = Counter("shadowledger_witness_alarms", "Split-view alarms raised",
                               ["kind"], registry=registry)

    def raise_alarm(self, origin: str, evidence: Evidence, reason: str, now: int) -> Path:
        """Write the evidence (once per refused checkpoint), log it at error level, count it."""
        digest = hashlib.sha256(evidence.shown).hexdigest()[:16]
        path = self.folder / f"{evidence.kind}-{digest}.json"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            doc = EvidenceFile(evidence, origin, now, self.witness_vkey)
            write_atomically(path, doc.to_bytes())
        self.counter.labels(kind=evidence.kind).inc()
        self.log.error("split view alarm", kind=evidence.kind, origin=origin, reason=reason,
                       evidence=str(path))
        return path

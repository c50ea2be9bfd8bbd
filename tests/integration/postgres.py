"""A real, throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp dir, 127.0.0.1.

The Debian ``postgresql`` package is installed by ``make test`` (Makefile
``system-deps``). initdb refuses to run as root, so as root the server runs as the
``postgres`` system user (``runuser``). Under ``CI=true`` a missing PostgreSQL fails the
run; elsewhere the PostgreSQL tests are skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.cluster import free_port_range


def pg_bin(tool: str) -> str | None:
    """``initdb`` / ``pg_ctl``: on PATH, or in Debian's versioned folder (not on PATH)."""
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return candidates[-1] if candidates else None


def require_postgres() -> tuple[str, str]:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        message = ("PostgreSQL (initdb, pg_ctl) is not installed: run `make test` as root"
                   " (it apt-get installs `postgresql`) or install it")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return initdb, pg_ctl


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its DSN (user ``postgres``, trust auth, loopback only).

    Its folder is a fresh one directly under the system temp dir (pytest's own temp dirs
    are private to root, out of the postgres user's reach); removed afterwards.
    """
    initdb, pg_ctl = require_postgres()
    folder = Path(tempfile.mkdtemp(prefix="shadowledger-pg-"))
    data, sockets = folder / "pgdata", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    try:
        subprocess.run(_as_owner([initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
                                  "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        port = free_port_range(1)
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-o", options, "-l",
                                  str(folder / "server.log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=90)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

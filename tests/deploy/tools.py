"""The deploy/ validators: found beside the test interpreter (PyPI) or on PATH (Debian).

`make test` installs them (pyproject dev extras; the Makefile's system-deps target for
Debian's systemd). Where one is missing, a developer's run skips with the command to fix
it, but CI (CI=true) fails: a check that silently did not run must not look green.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SHADOWLEDGER = Path(sys.executable).parent / "shadowledger"


def tool(name: str, install: str) -> str:
    """The path of ``name``; skip (or, under CI, fail) when it is not installed."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def cli_accepts(*verbs: str) -> bool:
    """Whether ``shadowledger VERBS --help`` exists (a command a deploy file names)."""
    return run(SHADOWLEDGER, *verbs, "--help").returncode == 0

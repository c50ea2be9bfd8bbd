"""Headless Chromium for explorer tests (Debian package `chromium`, `make system-deps`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=15000",  # let the page's fetches finish before the capture
)
MISSING = ("chromium is not installed: run `make system-deps` as root (it apt-get installs the"
           " Debian package chromium), or `apt-get install chromium`")


def chromium() -> str:
    """The browser's path; fails under CI=true when it is missing, else skips (with why)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return path


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run with a fresh profile; only 127.0.0.1 URLs."""
    assert url.startswith("http://127.0.0.1:"), url
    with tempfile.TemporaryDirectory(prefix="explorer-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def screenshot(url: str, out: Path, width: int = 1280, height: int = 900) -> Path:
    run(url, f"--screenshot={out}", f"--window-size={width},{height}")
    assert out.is_file(), f"chromium wrote no screenshot to {out}"
    return out


def dump_dom(url: str) -> str:
    return run(url, "--dump-dom", "--window-size=1280,900").stdout

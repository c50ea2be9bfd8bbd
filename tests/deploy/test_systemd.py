"""deploy/systemd: verified by systemd itself, hardened, and naming commands that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, SHADOWLEDGER, cli_accepts, run, tool

UNITS = DEPLOY / "systemd"
NODE = UNITS / "shadowledger-node.service"
INSTALLED = "/opt/shadowledger/bin/shadowledger"


def _directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def units(tmp_path: Path) -> list[Path]:
    """The unit files with the install path pointed at this checkout's shadowledger:
    systemd-analyze checks that every ExecStart binary exists and is executable."""
    out = []
    for unit in sorted([*UNITS.glob("*.service"), *UNITS.glob("*.timer")]):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED, str(SHADOWLEDGER)))
        out.append(copy)
    return out


def test_units_pass_systemd_analyze_verify(units: list[Path]) -> None:
    analyze = tool("systemd-analyze", "make system-deps (Debian package systemd)")
    done = run(analyze, "verify", *units)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys are only warnings


def test_a_misspelt_directive_is_caught(units: list[Path], tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "make system-deps (Debian package systemd)")
    bad = tmp_path / "bad.service"
    node = next(u for u in units if u.name == NODE.name)
    bad.write_text(node.read_text().replace("ProtectSystem=", "ProtectSystm="))
    assert "Unknown key" in run(analyze, "verify", bad).stderr


@pytest.mark.parametrize("name", ["shadowledger-node.service", "shadowledger-backup.service"])
def test_exposure_is_low(units: list[Path], name: str) -> None:
    analyze = tool("systemd-analyze", "make system-deps (Debian package systemd)")
    unit = next(u for u in units if u.name == name)
    done = run(analyze, "security", "--offline=true", "--threshold=20", unit)
    assert done.returncode == 0, done.stdout[-2000:]
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert level is not None and float(level.group(1)) <= 2.0, done.stdout[-300:]


def test_node_unit_has_the_hardening_the_runbook_promises() -> None:
    d = _directives(NODE)
    expected = {
        "User": "shadowledger", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes", "Restart": "on-failure", "KillSignal": "SIGTERM",
        "ReadWritePaths": "/var/lib/shadowledger", "LimitNOFILE": "65536",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], key
    assert d["SystemCallFilter"][0] == "@system-service"
    assert int(d["TimeoutStopSec"][0]) >= 30


def test_units_run_commands_that_exist() -> None:
    for unit in UNITS.glob("*.service"):
        command = _directives(unit)["ExecStart"][0]
        if command.startswith("/bin/sh -c "):
            command = shlex.split(command)[2].removeprefix("exec ")
        words = shlex.split(command)
        assert words[0] == INSTALLED, unit
        verbs = [w for w in words[1:3] if not w.startswith("-")]
        assert cli_accepts(*verbs), f"{unit.name}: shadowledger {' '.join(verbs)}"


def test_the_data_dir_of_the_example_config_is_writable() -> None:
    from node.config import load_config

    config = load_config(DEPLOY / "examples" / "node.toml", check_files=False)
    writable = Path(_directives(NODE)["ReadWritePaths"][0])
    assert config.node.data_dir.is_relative_to(writable)

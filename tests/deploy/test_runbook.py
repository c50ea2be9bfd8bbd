"""docs/OPERATIONS.md stays true: every `shadowledger` command and option it names exists."""

from __future__ import annotations

import argparse
import re

from node.cli import build_parser
from tests.deploy.tools import ROOT

RUNBOOK = ROOT / "docs" / "OPERATIONS.md"
COMMAND = re.compile(r"(?:^|[\s`(])(?<!-n )shadowledger ([a-z][^`\n]*)")
"""``shadowledger VERB ...``, not the namespace in ``kubectl -n shadowledger ...``."""


def _commands() -> list[str]:
    text = RUNBOOK.read_text().replace("\\\n", " ")
    return [m.group(1) for m in COMMAND.finditer(text)]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _resolve(words: list[str]) -> tuple[list[str], argparse.ArgumentParser]:
    parser, path = build_parser(), []
    for word in words:
        sub = _subparsers(parser)
        if word not in sub:
            break
        parser, path = sub[word], [*path, word]
    return path, parser


def test_the_runbook_names_commands() -> None:
    assert len(_commands()) >= 10


def test_every_command_and_option_in_the_runbook_exists() -> None:
    for line in _commands():
        words = line.split()
        path, parser = _resolve(words)
        assert path and not _subparsers(parser), f"not a full command: shadowledger {line}"
        known = {o for a in parser._actions for o in a.option_strings}
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in known, f"shadowledger {' '.join(path)} has no {option}"

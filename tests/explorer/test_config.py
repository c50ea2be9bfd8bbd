"""The [explorer] section of node.toml."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from node.config import ConfigError, ExplorerSection, load_config
from tests.node.test_config import MINIMAL, write


def test_explorer_is_off_by_default_and_local_only(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), check_files=False)
    assert config.explorer == ExplorerSection(enabled=False, listen="127.0.0.1:8101",
                                              max_concurrent=16)


def test_explorer_settings(tmp_path: Path) -> None:
    text = MINIMAL + '\n[explorer]\nenabled = true\nlisten = "[::1]:8200"\nmax_concurrent = 4\n'
    config = load_config(write(tmp_path, text), check_files=False)
    assert config.explorer == ExplorerSection(True, "[::1]:8200", 4)


@pytest.mark.parametrize(("section", "message"), [
    ('enabled = "yes"', r"explorer\.enabled: must be true or false, got 'yes'"),
    ('enabled = true\nlisten = "nowhere"', r"explorer\.listen: "),
    ("max_concurrent = 0", r"explorer\.max_concurrent: must be at least 1, got 0"),
    ("port = 80", r"explorer\.port: unknown key \(known: enabled, listen, max_concurrent\)"),
])
def test_bad_explorer_settings_name_the_key(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, MINIMAL + "\n[explorer]\n" + section + "\n"),
                    check_files=False)


def test_explorer_keys_are_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "CONFIG.md").read_text()
    assert "### `[explorer]`" in doc
    for f in dataclasses.fields(ExplorerSection):
        assert f"| `{f.name}` |" in doc, f.name

"""Progress bars for long CLI runs: on stderr, only when it is a terminal and not --quiet."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(total: int | None, what: str, quiet: bool, unit: str = "row",
                 force: bool = False, bar_format: str | None = None) -> Any:
    """A tqdm bar (``update(n)``, ``close()``); a no-op one when nobody would see it,
    unless ``force`` (a ``--progress`` flag) asks for it on a non-terminal too."""
    hidden = quiet or not (force or sys.stderr.isatty())
    return tqdm(total=total, desc=what, unit=unit, unit_scale=True, file=sys.stderr,
                disable=hidden, dynamic_ncols=True, smoothing=0.1, bar_format=bar_format)

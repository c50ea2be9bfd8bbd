"""The explorer in a real headless Chromium: the page renders the ledger and draws its
charts with no outside asset (the test machine has no internet)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from node.explorer.server import ExplorerServer
from node.explorer.views import Explorer
from tests.explorer import browser
from tests.explorer.http import get_json
from tests.explorer.ledger_fixture import Built, build

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
LATENCY_COLOR = "#0b5cad"
WIDTH, HEIGHT = 1280, 900


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Built, str]]:
    browser.chromium()
    built, ledger = build(tmp_path_factory.mktemp("browser") / "net")
    server = ExplorerServer(Explorer(ledger, built.genesis_bytes), "127.0.0.1:0").start()
    try:
        yield built, server.url
    finally:
        server.stop()
        ledger.storage.close()


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def _pixels_of(image: Image.Image, colour: str, box: tuple[int, int, int, int]) -> int:
    """Pixels within 3 levels of ``colour`` per channel inside ``box`` (x0, y0, x1, y1)."""
    target = _rgb(colour)
    region = image.crop(box)
    return sum(
        n for n, px in (region.getcolors(maxcolors=1 << 20) or [])
        if all(abs(a - b) <= 3 for a, b in zip(px[:3], target, strict=True))
    )


def test_overview_screenshot_shows_the_charts(served: tuple[Built, str], tmp_path: Path) -> None:
    _, url = served
    out = browser.screenshot(url, tmp_path / "overview.png", WIDTH, HEIGHT)
    image = Image.open(out).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the page looks blank"
    assert max(n for n, _ in colours) < 0.9 * WIDTH * HEIGHT, "one colour fills the page"
    left, right = (0, 0, WIDTH // 2, HEIGHT), (WIDTH // 2, 0, WIDTH, HEIGHT)
    series = get_json(url, "/api/charts/records-per-day?days=14")["series"]
    for i, s in enumerate(series):
        drawn = _pixels_of(image, PALETTE[i], left)
        # a legend swatch is 144 pixels; a bar of 4 or 5 records covers thousands
        wanted = 1000 if sum(s["counts"]) >= 4 else 144
        assert drawn >= wanted, f"series {s['name']} ({PALETTE[i]}): {drawn} pixels"
        assert _pixels_of(image, PALETTE[i], right) == 0
    assert _pixels_of(image, LATENCY_COLOR, right) > 2000  # two day-long block gaps


def test_block_page_renders_its_records(served: tuple[Built, str]) -> None:
    built, url = served
    dom = browser.dump_dom(url + "#/block/3")
    assert 'data-ready="1"' in dom
    indexes = [i for i, h in enumerate(built.heights) if h == 3]
    rendered = [int(x) for x in re.findall(r'data-record-index="(\d+)"', dom)]
    assert rendered == indexes
    for i in indexes:
        assert built.envelopes[i].record_id.hex()[:24] in dom
    assert "Block 3" in dom and "final, signed by validator.tax-agency" in dom


def test_record_page_shows_body_and_receipt(served: tuple[Built, str]) -> None:
    built, url = served
    dom = browser.dump_dom(url + "#/record/9")
    assert built.envelopes[9].record_id.hex() in dom
    assert "sharing_event by social-security" in dom and "health-insurance" in dom
    assert re.search(r'<pre id="receipt">c2sp.org/tlog-proof@v1\nindex 9\n', dom)
    assert 'href="/api/records/9/receipt"' in dom


def test_agreements_page_shows_parties_and_revocation(served: tuple[Built, str]) -> None:
    built, url = served
    dom = browser.dump_dom(url + "#/agreements")
    assert "Sharing agreements (2)" in dom
    assert f'data-agreement="{built.revoked_id.hex()}"' in dom
    assert "revoked by health-insurance (record 14: purpose fulfilled)" in dom
    assert "Social Code s.67" in dom and "income-records, addresses" in dom

"""Open the rendered report in a real headless Chromium (DevTools over a pipe)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dropkit.report import render

from ._browser import CHROMIUM, Browser

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is not installed (make system-deps)"
)

DECODED_WIDTHS = (
    "Promise.all(Array.from(document.images).map("
    "i => i.decode().then(() => i.naturalWidth, () => 0)))"
)


def test_report_in_chromium(metrics_path: Path, tmp_path: Path) -> None:
    report = render(metrics_path, tmp_path / "report.html")
    with Browser(tmp_path / "profile") as browser:
        browser.open(report.as_uri())
        widths = browser.evaluate(DECODED_WIDTHS)
        rows = browser.evaluate("document.querySelectorAll('#headline tbody tr').length")
        headers = browser.evaluate(
            "Array.from(document.querySelectorAll('#headline thead th')).map(t => t.textContent)"
        )
        shot = browser.screenshot(tmp_path / "report.png")
        errors = browser.console_errors()
    assert errors == []
    assert len(widths) == 6 and all(w > 0 for w in widths)
    assert rows == 2
    assert headers[:3] == ["Method", "Accuracy", "NLL"]
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000


def test_browser_check_detects_broken_pages(tmp_path: Path) -> None:
    # Negative control: the same checks must fail on a broken page.
    page = tmp_path / "broken.html"
    page.write_text("<img src='missing.png'><script>console.error('boom')</script>")
    with Browser(tmp_path / "profile") as browser:
        browser.open(page.as_uri())
        widths = browser.evaluate(DECODED_WIDTHS)
        errors = browser.console_errors()
    assert widths == [0]
    assert "boom" in errors
    assert any("ERR_FILE_NOT_FOUND" in e for e in errors)


def _five_methods(metrics: dict) -> dict:
    """The demo's five methods with its longest names and widest numbers."""
    base = metrics["methods"][1]
    names = ["Softmax", "Temperature scaling", "MC dropout (T=50)", "Last-layer Laplace",
             "Deep ensemble (M=5)"]  # fmt: skip
    metrics["methods"] = [
        {**base, "name": n, "aurc": 0.000663 + k * 1e-5, "params": 83_717 * (5 if k == 4 else 1),
         "time_s": 5.68 + k, "forward_passes": 50 if k == 2 else 1, "nll": 0.05 + k / 100}
        for k, n in enumerate(names)
    ]  # fmt: skip
    return metrics


LAYOUT = """(() => {
  const out = {page: document.documentElement.scrollWidth, view: window.innerWidth, tables: []};
  for (const t of document.querySelectorAll('table.metrics')) {
    const card = t.closest('section'), style = getComputedStyle(card);
    const inner = card.getBoundingClientRect().right - parseFloat(style.paddingRight)
      - parseFloat(style.borderRightWidth);
    out.tables.push({id: t.id, right: t.getBoundingClientRect().right, inner: inner,
                     scrolls: t.parentElement.scrollWidth > t.parentElement.clientWidth});
  }
  return out; })()"""


@pytest.mark.parametrize("width", [1280, 900, 800, 760])
def test_tables_stay_inside_their_cards(metrics, tmp_path: Path, width: int) -> None:
    import json

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(_five_methods(metrics)))
    report = render(path, tmp_path / "report.html")
    with Browser(tmp_path / "profile") as browser:
        browser.open(report.as_uri(), width=width)
        layout = browser.evaluate(LAYOUT)
        if width in (1280, 800):
            browser.screenshot(tmp_path / f"report-{width}.png")
    assert layout["page"] <= layout["view"], layout  # no sideways scrolling of the page
    assert {t["id"] for t in layout["tables"]} == {"headline", "settings"}
    for table in layout["tables"]:
        assert table["right"] <= table["inner"] + 0.5, (width, table)
        assert not table["scrolls"], (width, table)  # fits without its scroll box

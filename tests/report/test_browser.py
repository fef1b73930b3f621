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

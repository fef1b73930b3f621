"""The report renders from metrics.json alone: structure, readings, errors, atomicity."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dropkit.report import atomic_write_text, readings, render, render_html, validate_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_render_writes_self_contained_page(metrics_path: Path, tmp_path: Path) -> None:
    out = render(metrics_path, tmp_path / "report.html")
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # No external resource of any kind: every src is an inline data URI.
    assert not re.search(r"https?://", html)
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    images = _images(html)
    # learning curves, reliability, histograms, risk-coverage, sweep, convergence
    assert len(images) == 6
    assert all(img.startswith(PNG_MAGIC) and len(img) > 5000 for img in images)
    assert 'id="headline"' in html
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "report.html"]


def test_headline_table_marks_best_per_column(metrics: dict[str, Any]) -> None:
    html = render_html(metrics)
    table = html[html.index('id="headline"') : html.index("</table>")]
    rows = table.split("<tr>")[2:]
    assert len(rows) == 2
    det, mc = rows
    # MC dropout wins every quality column, softmax forward passes and time; equal
    # parameter counts tie, and a tie across the board marks nothing.
    assert mc.count('class="best"') == 6
    assert det.count('class="best"') == 2
    assert "98.0%" in mc and "0.006" in mc


def test_optional_sections_are_left_out(metrics: dict[str, Any]) -> None:
    for key in ("settings", "sweep", "convergence"):
        metrics.pop(key)
    for m in metrics["methods"]:
        m.pop("risk_coverage")
    html = render_html(metrics)
    assert len(_images(html)) == 2
    for anchor in ("learning", "sweep", "convergence", "selective"):
        assert f'id="{anchor}"' not in html
    assert 'id="calibration"' in html and 'id="ood"' in html


def test_readings_follow_the_numbers(metrics: dict[str, Any]) -> None:
    s0, s1 = metrics["settings"]
    gap0 = s0["val_loss"][-1] - s0["train_loss"][-1]
    gap1 = s1["val_loss"][-1] - s1["train_loss"][-1]
    assert gap1 < gap0
    text = readings.learning_curves(metrics["settings"])
    assert text.startswith(f"fixed p=0.2 closed the train/validation gap from {gap0:.3f}")
    assert f"to {gap1:.3f}" in text
    # Swap the curves: now no setting narrows the gap.
    s1["train_loss"], s1["val_loss"] = s0["train_loss"], [v + 0.5 for v in s0["val_loss"]]
    assert readings.learning_curves(metrics["settings"]).startswith("No dropout setting narrowed")

    assert readings.reliability(metrics["methods"]).startswith(
        "Best calibrated: MC dropout (T=30) (ECE 0.015, vs 0.030 for Deterministic softmax)"
    )
    sweep = readings.sweep(metrics["sweep"])
    assert sweep.startswith("Best p = 0.2 (validation NLL 0.090); without dropout (p = 0) 0.120")
    conv = metrics["convergence"]
    # change: 0.05, 0.03, 0.02, 0.01, 0.005 (and 0 for the reference T = 32)
    assert readings.first_below(conv["samples"], conv["change"], 0.01) == 8
    assert readings.first_below(conv["samples"], conv["change"], 0.001) == 32
    assert readings.first_below([1, 2], [0.5, 0.4], 0.01) is None
    assert readings.convergence(conv) == (
        "From T = 8 on, the mean predictive is within 0.01 (L1) of the T = 32 one; "
        "NLL is 0.200 at T = 1 and 0.090 at T = 32."
    )
    conv["change"] = [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    assert readings.convergence(conv).startswith("The estimate is still moving at T = 16")


def test_risk_at_interpolates() -> None:
    curve = {"coverage": [0.5, 1.0], "risk": [0.0, 0.1]}
    assert readings.risk_at(curve, 0.8) == pytest.approx(0.06)
    assert readings.risk_at(curve, 1.0) == pytest.approx(0.1)
    assert readings.risk_at(curve, 0.1) == 0.0


def test_histogram_reading_names_best_separator(metrics: dict[str, Any]) -> None:
    text = readings.uncertainty_histograms(metrics["methods"], "held-out classes 5-9")
    median_in = sorted(metrics["methods"][1]["scores_in"])
    expected = (median_in[29] + median_in[30]) / 2
    assert text.startswith("MC dropout (T=30) separates held-out classes 5-9 best (AUROC 0.900")
    assert f"{expected:.3f} in-distribution" in text


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda m: m.update(schema_version=7),
            r"expected schema_version to be 1, but got 7\. Re-run",
        ),
        (
            lambda m: m.update(methods=[]),
            r"expected methods to be a non-empty list of objects, but got \[\]",
        ),
        (
            lambda m: m["methods"][1].update(nll=float("nan")),
            r"expected methods\[1\]\.nll to be a finite number, but got nan",
        ),
        (
            lambda m: m["methods"][0].pop("auroc"),
            r"expected methods\[0\]\.auroc to be a finite number, but got None",
        ),
        (
            lambda m: m["settings"][0]["val_loss"].pop(),
            r"expected settings\[0\]\.val_loss to be a list of 12 entries \(as long as "
            r"settings\[0\]\.epochs\), but got 11\. Record one value",
        ),
    ],
)
def test_malformed_metrics_are_rejected(metrics: dict[str, Any], mutate: Any, match: str) -> None:
    mutate(metrics)
    with pytest.raises(ValueError, match=match):
        validate_metrics(metrics)


def test_render_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected an existing metrics\.json"):
        render(tmp_path / "missing.json", tmp_path / "r.html")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"expected valid JSON in .*bad\.json"):
        render(bad, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(
        ValueError, match=r"expected metrics\.json to be a JSON object, but got 'list'"
    ):
        render(bad, tmp_path / "r.html")


def test_interrupted_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    atomic_write_text(target, "old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new" * 1000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_render_refuses_to_overwrite_its_input(metrics_path: Path, tmp_path: Path) -> None:
    before = metrics_path.read_bytes()
    with pytest.raises(ValueError, match=r"expected out_html to differ from the metrics file"):
        render(metrics_path, metrics_path)
    with pytest.raises(ValueError, match=r"expected out_html to differ"):
        render(metrics_path, tmp_path / "." / metrics_path.name)
    assert metrics_path.read_bytes() == before
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"expected out_html to be a file, but got the"):
        render(metrics_path, folder)
    assert list(folder.iterdir()) == []

"""Render ``metrics.json`` into one self-contained HTML page.

The page embeds its plots as base64 PNG ``data:`` URIs and its CSS inline; it
references no external URL, so it opens offline and survives being mailed.
The schema is documented in :mod:`dropkit.report`.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from dropkit._io import atomic_write_text
from dropkit.report import bayes, frontier, plots, readings
from dropkit.report._style import CSS
from dropkit.report.schema import COLUMNS, SCHEMA_VERSION, WHERE, validate_metrics

__all__ = ["SCHEMA_VERSION", "render", "render_html", "validate_metrics"]

_COLUMNS = COLUMNS
_WHERE = WHERE


def _bad(what: str, got: Any, fix: str) -> ValueError:
    return ValueError(f"{_WHERE}: expected {what}, but got {got!r}. {fix}")


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _section(
    anchor: str, title: str, reading: str, png: bytes, note: str = "", after: str = ""
) -> str:
    extra = f'<p class="note">{escape(note)}</p>' if note else ""
    return (
        f'<section id="{anchor}"><h2>{escape(title)}</h2>'
        f'<p class="reading">{escape(reading)}</p>{extra}'
        f"<figure>{_img(png, title)}</figure>{after}</section>"
    )


def _best(methods: list[dict[str, Any]], key: str, better: str | None) -> float | None:
    values = [m[key] for m in methods]
    if better is None or len(set(values)) == 1:  # a tie across the board marks nothing
        return None
    return min(values) if better == "min" else max(values)


def _headline_table(methods: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for _, h, _, _ in _COLUMNS)
    rows = []
    for m in methods:
        cells = []
        for key, _, fmt, better in _COLUMNS:
            value = m[key]
            text = fmt.format(int(value)) if fmt.endswith("d}") else fmt.format(value)
            best = _best(methods, key, better)
            cls = ' class="best"' if best is not None and value == best else ""
            cells.append(f"<td{cls}>{text}</td>")
        score = escape(m.get("ood_score", ""))
        name = f"{escape(m['name'])}<span class='sub'>{score}</span>"
        rows.append(f"<tr><th scope='row'>{name}</th>{''.join(cells)}</tr>")
    return (
        '<div class="scroll"><table id="headline" class="metrics"><thead><tr><th>Method</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _settings_table(settings: list[dict[str, Any]]) -> str:
    rows = []
    for s in settings:
        p = s.get("p") or [0.0]
        p_text = f"{p[0]:.2f}" if min(p) == max(p) else f"{p[0]:.2f} → {p[-1]:.2f}"
        acc = s.get("val_acc") or [float("nan")]
        rows.append(
            f"<tr><th scope='row'>{escape(s['name'])}"
            f"<span class='sub'>{escape(s.get('description', ''))}</span></th>"
            f"<td>{p_text}</td><td>{s['train_loss'][-1]:.3g}</td><td>{s['val_loss'][-1]:.3g}</td>"
            f"<td>{readings.gap(s):.3g}</td><td>{acc[-1]:.1%}</td>"
            f"<td>{s.get('time_s', float('nan')):.1f}</td></tr>"
        )
    return (
        '<div class="scroll"><table id="settings" class="metrics"><thead><tr><th>Setting</th>'
        "<th>p</th><th>Train NLL</th><th>Val NLL</th><th>Gap</th><th>Val accuracy</th>"
        f"<th>Time (s)</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _dataset_line(ds: dict[str, Any]) -> str:
    parts = [escape(ds.get("description") or ds.get("name") or "")]
    for key, label in (
        ("n_train", "train"),
        ("n_val", "validation"),
        ("n_test", "test"),
        ("n_ood", "out-of-distribution"),
    ):
        if ds.get(key) is not None:
            parts.append(f"{int(ds[key])} {label}")
    return " · ".join(p for p in parts if p)


def _ood_label(ds: dict[str, Any]) -> str:
    classes = ds.get("ood_classes")
    if classes:
        return f"held-out classes {min(classes)}-{max(classes)}"
    return "out-of-distribution inputs"


def render_html(metrics: dict[str, Any]) -> str:
    """Build the report page from a parsed ``metrics.json``.

    Args:
        metrics: Metrics following the schema in :mod:`dropkit.report`.

    Returns:
        The complete HTML document as a string.

    Raises:
        ValueError: If ``metrics`` does not follow the schema.
    """
    m = validate_metrics(metrics)
    methods, ds = m["methods"], m.get("dataset") or {}
    ood = _ood_label(ds)
    title = m.get("title") or "dropkit report"
    sections: list[str] = []
    nav: list[tuple[str, str]] = [("summary", "Summary")]

    def add(anchor: str, name: str, make: Callable[[], str]) -> None:
        sections.append(make())
        nav.append((anchor, name))

    settings = m.get("settings") or []
    if settings:
        add(
            "learning",
            "Learning curves",
            lambda: _section(
                "learning",
                "Learning curves: training vs validation NLL",
                readings.learning_curves(settings),
                plots.learning_curves(settings),
                "Log scale. Training loss is measured with dropout off, so the shaded gap "
                "is overfitting, not dropout noise.",
                _settings_table(settings),
            ),
        )
    if any(x.get("reliability") for x in methods):
        bins = m.get("ece_bins", "?")
        add(
            "calibration",
            "Calibration",
            lambda: _section(
                "calibration",
                "Reliability diagrams",
                readings.reliability(methods),
                plots.reliability(methods),
                f"ECE with {bins} equal-{m.get('ece_binning', 'width')} bins; red bars show "
                "the gap between confidence and accuracy.",
            ),
        )
    if any(x.get("scores_in") and x.get("scores_out") for x in methods):
        add(
            "ood",
            "Out-of-distribution",
            lambda: _section(
                "ood",
                f"Uncertainty: in-distribution vs {ood}",
                readings.uncertainty_histograms(methods, ood),
                plots.uncertainty_histograms(methods),
            ),
        )
    if any(x.get("risk_coverage") for x in methods):
        add(
            "selective",
            "Risk-coverage",
            lambda: _section(
                "selective",
                "Selective prediction: risk vs coverage",
                readings.risk_coverage(methods),
                plots.risk_coverage(methods),
            ),
        )
    sweep = m.get("sweep")
    if sweep and sweep.get("trials"):
        add(
            "sweep",
            "Sweep",
            lambda: _section(
                "sweep",
                f"Sweep: {sweep['metric']} vs p",
                readings.sweep(sweep),
                plots.sweep(sweep),
                f"Engine: {sweep.get('engine', 'grid')}.",
            ),
        )
    conv = m.get("convergence")
    if conv and conv.get("samples"):
        add(
            "convergence",
            "MC convergence",
            lambda: _section(
                "convergence",
                "How the MC estimate converges with T",
                readings.convergence(conv),
                plots.convergence(conv),
            ),
        )
    how_bayesian = bayes.section(m)  # distances to HMC, or how to run it
    if how_bayesian is not None:
        add("bayes", bayes.TITLE, lambda: how_bayesian)
    depth = frontier.section(m)  # quality against cost per MC depth (bench mc --frontier)
    if depth is not None:
        add("frontier", frontier.TITLE, lambda: depth)
    notes = "".join(f"<li>{escape(n)}</li>" for n in m.get("notes") or [])
    links = "".join(f'<a href="#{a}">{escape(n)}</a>' for a, n in nav)
    meta = " · ".join(
        escape(str(x)) for x in (m.get("created"), f"dropkit {m.get('dropkit_version', '')}") if x
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><div class='wrap'><h1>{escape(title)}</h1>"
        f"<p class='dataset'>{_dataset_line(ds)}</p><nav>{links}</nav></div></header>"
        "<main class='wrap'>"
        f"<section id='summary'><h2>Summary</h2><p class='reading'>"
        f"{escape(readings.headline(m))}</p>{_headline_table(methods)}"
        "<p class='note'>Best value per column in bold green (nothing is marked when all "
        "tie). Forward passes are per test input; time covers post-hoc fitting and "
        "prediction.</p></section>"
        f"{''.join(sections)}"
        f"{f'<section id=notes><h2>Notes</h2><ul>{notes}</ul></section>' if notes else ''}"
        f"</main><footer class='wrap'>{meta}</footer></body></html>\n"
    )


def render(metrics_json_path: str | os.PathLike[str], out_html: str | os.PathLike[str]) -> Path:
    """Render ``metrics.json`` into a self-contained HTML report, atomically.

    Args:
        metrics_json_path: Path of a ``metrics.json`` following the schema in
            :mod:`dropkit.report`.
        out_html: Destination of the report; written via a temporary file and
            a rename, so an interrupted render leaves no partial file.

    Returns:
        The path of the written report.

    Raises:
        FileNotFoundError: If the metrics file does not exist.
        IsADirectoryError: If ``out_html`` is an existing folder.
        ValueError: If it is not valid JSON or does not follow the schema
            (the message names the field), or if ``out_html`` is the metrics
            file itself.
    """
    src, out = Path(metrics_json_path), Path(out_html)
    if out.is_dir():
        raise IsADirectoryError(
            f"{_WHERE}: expected out_html to be a file, but got the folder {str(out)!r}. "
            "Pass a file name such as report.html inside it."
        )
    if src.exists() and (out.resolve() == src.resolve() or (out.exists() and out.samefile(src))):
        raise ValueError(
            f"{_WHERE}: expected out_html to differ from the metrics file, but got "
            f"{str(out)!r} for both. Pass another output path; the metrics would be lost."
        )
    if not src.is_file():
        raise FileNotFoundError(
            f"{_WHERE}: expected an existing metrics.json, but got {str(src)!r}. "
            "Run dropkit demo --out DIR first, or pass the right path."
        )
    try:
        metrics = json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(
            f"valid JSON in {str(src)!r}", str(exc), "Regenerate it with dropkit demo."
        ) from exc
    return atomic_write_text(out, render_html(metrics))

"""Render ``metrics.json`` into one self-contained HTML page.

The page embeds its plots as base64 PNG ``data:`` URIs and its CSS inline; it
references no external URL, so it opens offline and survives being mailed.
The schema is documented in :mod:`dropkit.report`.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from dropkit.report import plots, readings
from dropkit.report._atomic import atomic_write_text
from dropkit.report._style import CSS

SCHEMA_VERSION = 1

# column key, header, format, better ("min" / "max" / None)
_COLUMNS: tuple[tuple[str, str, str, str | None], ...] = (
    ("accuracy", "Accuracy", "{:.1%}", "max"),
    ("nll", "NLL", "{:.3f}", "min"),
    ("ece", "ECE", "{:.3f}", "min"),
    ("brier", "Brier", "{:.3f}", "min"),
    ("auroc", "OOD AUROC", "{:.3f}", "max"),
    ("aurc", "AURC", "{:.3g}", "min"),
    ("forward_passes", "Forward passes", "{:d}", "min"),
    ("time_s", "Time (s)", "{:.2f}", "min"),
    ("params", "Parameters", "{:,d}", "min"),
)
_WHERE = "dropkit.report.render"


def _bad(what: str, got: Any, fix: str) -> ValueError:
    return ValueError(f"{_WHERE}: expected {what}, but got {got!r}. {fix}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_metrics(metrics: Any) -> dict[str, Any]:
    """Check the parts of ``metrics`` the report needs; return it unchanged.

    Args:
        metrics: The parsed ``metrics.json``.

    Returns:
        ``metrics``.

    Raises:
        ValueError: If the schema version, the ``methods`` list or a headline
            number is missing or malformed.
    """
    if not isinstance(metrics, dict):
        raise _bad(
            "a JSON object", type(metrics).__name__, "Pass the metrics.json of dropkit demo."
        )
    version = metrics.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _bad(
            f"schema_version {SCHEMA_VERSION}",
            version,
            "Re-run dropkit demo with this dropkit version to regenerate metrics.json.",
        )
    methods = metrics.get("methods")
    if not isinstance(methods, list) or not methods:
        raise _bad("a non-empty 'methods' list", methods, "See the schema in dropkit.report.")
    for i, method in enumerate(methods):
        if not isinstance(method, dict) or not isinstance(method.get("name"), str):
            raise _bad(f"methods[{i}] to be an object with a 'name'", method, "Add a name.")
        for key, _, _, _ in _COLUMNS:
            if not _finite(method.get(key)):
                raise _bad(
                    f"a finite number at methods[{i}].{key} ({method['name']})",
                    method.get(key),
                    "Every method needs every headline metric; see the schema in dropkit.report.",
                )
    for i, setting in enumerate(metrics.get("settings") or []):
        lengths = {len(setting.get(k) or []) for k in ("epochs", "train_loss", "val_loss")}
        if len(lengths) != 1 or 0 in lengths:
            raise _bad(
                f"settings[{i}] to have equally long, non-empty epochs/train_loss/val_loss",
                setting.get("name"),
                "Record one value per epoch for each curve.",
            )
    return metrics


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
        '<table id="headline" class="metrics"><thead><tr><th>Method</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
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
        '<table id="settings" class="metrics"><thead><tr><th>Setting</th><th>p</th>'
        "<th>Train NLL</th><th>Val NLL</th><th>Gap</th><th>Val accuracy</th><th>Time (s)</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _dataset_line(ds: dict[str, Any]) -> str:
    parts = [escape(ds.get("description") or ds.get("name", ""))]
    for key, label in (("n_train", "train"), ("n_val", "validation"), ("n_test", "test")):
        if key in ds:
            parts.append(f"{ds[key]} {label}")
    if "n_ood" in ds:
        parts.append(f"{ds['n_ood']} out-of-distribution")
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
        ValueError: If it is not valid JSON or does not follow the schema.
    """
    src = Path(metrics_json_path)
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
    return atomic_write_text(out_html, render_html(metrics))

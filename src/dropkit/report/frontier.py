"""The report's "Depth frontier" section: MC dropout quality against its cost, per depth.

Reads the optional ``frontier`` block of ``metrics.json``, written by
``dropkit bench mc --frontier --out F.json`` (whose JSON is itself a
``metrics.json``: ``dropkit report F.json`` renders it)::

    "frontier": {
      "quality": "OOD AUROC (mutual information)",
      "command": "dropkit bench mc --frontier --out F.json",
      "models": [
        {"name": "minilm", "description": str, "blocks": 6, "samples": 20,
         "points": [
           {"name": "last:2", "kind": "dropkit",   # or "softmax", "variant", "peer"
            "k": 2,                               # null for softmax and peers
            "cost_x": 2.9, "cost_x_std": 0.1,     # x one deterministic forward
            "auroc": 0.91, "auroc_std": 0.02,     # the quality axis
            "ece": 0.03, "nll": 0.12, "agreement": 0.95}   # optional
         ]}
      ]
    }

The plot puts cost (log scale) on x and the quality on y, one panel per
model: dropkit's depths as a line from ``k = 0`` (head) to ``k = L`` (full MC),
the softmax baseline and the peers as single points.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

import datetime
from html import escape
from typing import Any

from dropkit.report import plots
from dropkit.report.schema import SCHEMA_VERSION, _fail, _is_finite, _is_int

TITLE = "Depth frontier"
COMMAND = "dropkit bench mc --frontier --out out/frontier.json"
_KINDS = ("softmax", "dropkit", "variant", "peer")


def validate(block: Any) -> dict[str, Any]:
    """Type-check the ``frontier`` block; raise a ``SchemaError`` naming the field."""
    if not isinstance(block, dict):
        raise _fail("frontier", "an object", block)
    for key in ("quality", "command"):
        if not isinstance(block.get(key, ""), str):
            raise _fail(f"frontier.{key}", "a string", block.get(key))
    models = block.get("models")
    if not isinstance(models, list) or not models:
        raise _fail("frontier.models", "a non-empty list of objects", models)
    for i, model in enumerate(models):
        field = f"frontier.models[{i}]"
        if not isinstance(model, dict):
            raise _fail(field, "an object", model)
        if not isinstance(model.get("name"), str):
            raise _fail(f"{field}.name", "a string", model.get("name"))
        for key in ("blocks", "samples"):
            if key in model and not (_is_int(model[key]) and model[key] >= 0):
                raise _fail(f"{field}.{key}", "an integer >= 0", model[key])
        points = model.get("points")
        if not isinstance(points, list) or not points:
            raise _fail(f"{field}.points", "a non-empty list of objects", points)
        for j, point in enumerate(points):
            _point(point, f"{field}.points[{j}]")
    return block


def _point(point: Any, field: str) -> None:
    if not isinstance(point, dict):
        raise _fail(field, "an object", point)
    if not isinstance(point.get("name"), str):
        raise _fail(f"{field}.name", "a string", point.get("name"))
    if point.get("kind") not in _KINDS:
        raise _fail(f"{field}.kind", "'softmax', 'dropkit', 'variant' or 'peer'", point.get("kind"))
    if point.get("k") is not None and not (_is_int(point["k"]) and point["k"] >= 0):
        raise _fail(f"{field}.k", "an integer >= 0 or null", point["k"])
    if not _is_finite(point.get("cost_x")) or point["cost_x"] <= 0:
        raise _fail(f"{field}.cost_x", "a positive finite number", point.get("cost_x"))
    if not _is_finite(point.get("auroc")) or not 0.0 <= point["auroc"] <= 1.0:
        raise _fail(f"{field}.auroc", "a number in [0, 1]", point.get("auroc"))
    for key in ("cost_x_std", "auroc_std", "ece", "nll", "agreement"):
        if point.get(key) is not None and not _is_finite(point[key]):
            raise _fail(f"{field}.{key}", "a finite number or null", point[key])


@plots._styled
def frontier_plot(block: dict[str, Any]) -> Any:
    """Quality against cost (log x), one panel per model.

    Error bars are the quality's standard deviation across seeds; the cost's
    is in the table (on a log axis a spread near the mean has no lower end).

    Args:
        block: The ``frontier`` block of ``metrics.json``.

    Returns:
        PNG bytes.
    """
    models = block["models"]
    fig, axes = plots._figure(len(models), width=4.8 * len(models), height=3.4)
    for ax, model in zip(axes[0], models, strict=True):
        points = model["points"]
        depth = sorted((p for p in points if p["kind"] == "dropkit"), key=lambda p: p["k"] or 0)
        ax.errorbar(
            [p["cost_x"] for p in depth],
            [p["auroc"] for p in depth],
            yerr=[p.get("auroc_std") or 0.0 for p in depth],
            fmt="o-",
            color=plots.colour(0),
            lw=1.8,
            ms=4,
            capsize=2,
            label="dropkit, k = 0 .. L",
        )
        for p in depth:
            ax.annotate(
                plots._t(p["name"]), (p["cost_x"], p["auroc"]), fontsize=7,
                xytext=(3, -9), textcoords="offset points",
            )  # fmt: skip
        others = [p for p in points if p["kind"] != "dropkit"]
        for i, p in enumerate(others, start=1):
            marker = {"softmax": "*", "variant": "D"}.get(p["kind"], "s")
            ax.errorbar(
                [p["cost_x"]],
                [p["auroc"]],
                yerr=[p.get("auroc_std") or 0.0],
                fmt=marker,
                color=plots.colour(i),
                ms=8 if marker == "*" else 5,
                label=plots._t(p["name"]),
            )
        ax.set_xscale("log")
        ax.set_xlabel("cost (x one deterministic forward)")
        ax.set_ylabel(plots._t(block.get("quality", "quality")))
        ax.set_title(plots._t(model.get("description") or model["name"]))
        ax.legend(loc="best")
    return fig


def reading(block: dict[str, Any]) -> str:
    """Per model: the cheapest depth reaching 90% of full MC's gain over softmax."""
    parts = []
    for model in block["models"]:
        by = {p["name"]: p for p in model["points"]}
        full, soft = by.get("full"), by.get("softmax")
        if full is None or soft is None:
            continue
        gain = full["auroc"] - soft["auroc"]
        depth = sorted(
            (p for p in model["points"] if p["kind"] == "dropkit"), key=lambda p: p["k"] or 0
        )
        hit = next(
            (p for p in depth if gain > 0 and p["auroc"] - soft["auroc"] >= 0.9 * gain), None
        )
        if hit is None:
            parts.append(
                f"{model['name']}: full MC gains {gain:+.3f} AUROC over softmax; no depth "
                "reaches 90% of it"
            )
        else:
            parts.append(
                f"{model['name']}: {hit['name']} reaches 90% of full MC's AUROC gain over "
                f"softmax ({gain:+.3f}) at {hit['cost_x'] / full['cost_x']:.0%} of its cost"
            )
    return "; ".join(parts) + "." if parts else "No model has both a softmax and a full row."


def _table(model: dict[str, Any]) -> str:
    def cell(p: dict[str, Any], key: str, fmt: str) -> str:
        v = p.get(key)
        return "<td>-</td>" if v is None else f"<td>{fmt.format(v)}</td>"

    rows = "".join(
        f"<tr><th scope='row'>{escape(p['name'])}</th>{cell(p, 'cost_x', '{:.2f}')}"
        f"{cell(p, 'auroc', '{:.3f}')}{cell(p, 'ece', '{:.3f}')}{cell(p, 'nll', '{:.3f}')}"
        f"{cell(p, 'agreement', '{:.3f}')}</tr>"
        for p in model["points"]
    )
    return (
        f"<div class='scroll'><table class='metrics'><caption>{escape(model['name'])}</caption>"
        "<thead><tr><th>Row</th><th>Cost (x fwd)</th><th>OOD AUROC</th><th>ECE</th>"
        f"<th>NLL</th><th>Agreement</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def section(metrics: dict[str, Any]) -> str | None:
    """The section's HTML, or ``None`` when ``metrics`` has no ``frontier`` block.

    Raises:
        SchemaError: If the block does not follow the schema above.
    """
    if metrics.get("frontier") is None:
        return None
    block = validate(metrics["frontier"])
    import base64

    png = base64.b64encode(frontier_plot(block)).decode("ascii")
    command = escape(block.get("command", COMMAND))
    tables = "".join(_table(m) for m in block["models"])
    return (
        f'<section id="frontier"><h2>{escape(TITLE)}</h2>'
        f"<p class='reading'>{escape(reading(block))}</p>"
        "<p class='note'>k = number of last blocks whose dropout is on (k = 0: the head "
        "only; full: every site). Agreement: Spearman correlation of the mutual information "
        f"with an independent full MC run. Reproduce: <code>{command}</code></p>"
        f'<figure><img src="data:image/png;base64,{png}" alt="{escape(TITLE)}"></figure>'
        f"{tables}</section>"
    )


def _point_of(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "kind": row["kind"],
        "k": row["k"],
        "cost_x": row["cost_x"]["mean"],
        "cost_x_std": row["cost_x"]["std"],
        "auroc": row["auroc"]["mean"],
        "auroc_std": row["auroc"]["std"],
        "ece": row["ece"]["mean"],
        "nll": row["nll"]["mean"],
        "agreement": row["agreement"]["mean"],
    }


def metrics_record(results: list[dict[str, Any]], command: str = COMMAND) -> dict[str, Any]:
    """The ``metrics.json`` part of a frontier run: ``methods`` and ``frontier``.

    ``methods`` (the report's headline table) holds the rows of the first
    model, means across seeds; ``frontier`` holds every model's points.

    Args:
        results: The per-model results of :func:`dropkit.bench.frontier.run_case`.
        command: The command line to show under the plot.

    Returns:
        ``schema_version``, ``title``, ``created``, ``methods``, ``frontier``, ``notes``.
    """
    from dropkit import __version__

    block = {
        "quality": "OOD AUROC (mutual information)",
        "command": command,
        "models": [
            {
                "name": r["name"],
                "description": r["description"],
                "blocks": r["blocks"],
                "samples": r["samples"],
                "points": [_point_of(row) for row in r["rows"]],
            }
            for r in results
        ],
    }
    first = results[0]
    methods = []
    for row in first["rows"]:
        passes = 1 if row["kind"] == "softmax" else first["samples"]
        methods.append(
            {
                "name": row["name"],
                "ood_score": "predictive entropy"
                if row["kind"] == "softmax"
                else "mutual information",
                **{k: row[k]["mean"] for k in ("accuracy", "nll", "ece", "brier", "auroc", "aurc")},
                "forward_passes": passes,
                "time_s": row["ms"]["mean"] / 1e3,
                "params": first["params"],
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "title": f"MC dropout depth frontier ({first['name']})",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dropkit_version": __version__,
        "methods": methods,
        "frontier": validate(block),
        "notes": [
            f"{r['name']}: in-distribution {r['in_distribution']}; shifted {r['shifted']}"
            for r in results
        ],
    }

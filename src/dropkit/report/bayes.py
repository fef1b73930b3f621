"""The report's "How Bayesian is it?" section: every method's distance to HMC.

Reads the optional ``bayes`` block of ``metrics.json``::

    "bayes": {
      "ran": true,                      # false: the section says how to run it
      "distances": [{"name": "MC dropout", "total_variation": 0.08,
                     "top1_agreement": 0.96}, ...],
      "rhat": 1.01,                     # HMC's worst split R-hat on the predictive
      "hmc_time_s": 40.0,               # optional
      "budget_s": 20.0, "estimate_s": 300.0,   # optional, when it did not run
      "command": "dropkit bench bayes --datasets digits"
    }

Distances are those of :mod:`dropkit.metrics.agreement` on the test inputs
(total variation between predictive distributions, top-1 agreement); the
reference is full-batch HMC (:class:`dropkit.baselines.HMC`), as in Izmailov
et al. (2021).

References:
    Izmailov, Vikram, Hoffman, Wilson (2021). What are Bayesian neural network
    posteriors really like? ICML.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from dropkit.report import plots
from dropkit.report.schema import _fail, _is_finite

TITLE = "How Bayesian is it?"
COMMAND = "dropkit bench bayes --datasets digits"
DEMO_BUDGET_S = 20.0
"""Seconds ``dropkit demo`` grants HMC: about the whole demo's own run time."""


def validate(block: Any) -> dict[str, Any]:
    """Type-check the ``bayes`` block; raise a ``SchemaError`` naming the field."""
    if not isinstance(block, dict):
        raise _fail("bayes", "an object", block)
    if not isinstance(block.get("ran"), bool):
        raise _fail("bayes.ran", "true or false", block.get("ran"))
    for key in ("command", "reason"):
        if not isinstance(block.get(key, ""), str):
            raise _fail(f"bayes.{key}", "a string", block.get(key))
    for key in ("rhat", "hmc_time_s", "budget_s", "estimate_s"):
        if key in block and not _is_finite(block[key]):
            raise _fail(f"bayes.{key}", "a finite number", block[key])
    if not block["ran"]:
        return block
    rows = block.get("distances")
    if not isinstance(rows, list) or not rows:
        raise _fail("bayes.distances", "a non-empty list", rows)
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise _fail(
                f"bayes.distances[{i}].name",
                "a string",
                row.get("name") if isinstance(row, dict) else row,
            )
        for key in ("total_variation", "top1_agreement"):
            value: Any = row.get(key)
            if not _is_finite(value) or not 0.0 <= value <= 1.0:
                raise _fail(f"bayes.distances[{i}].{key}", "a number in [0, 1]", value)
    return block


@plots._styled
def distance_bars(rows: list[dict[str, Any]]) -> Any:
    """Horizontal bars: total variation to HMC per method (shorter is closer).

    Args:
        rows: ``bayes.distances`` of ``metrics.json``.

    Returns:
        PNG bytes.
    """
    fig, axes = plots._figure(1, width=6.4, height=0.45 * len(rows) + 0.9)
    ax = axes[0, 0]
    names = [plots._t(r["name"]) for r in rows][::-1]
    values = [r["total_variation"] for r in rows][::-1]
    ax.barh(names, values, color=[plots.colour(len(rows) - 1 - i) for i in range(len(rows))])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlabel("mean total variation to the HMC predictive (0 = identical)")
    ax.set_xlim(0, max(max(values) * 1.25, 1e-3))
    ax.grid(axis="y", visible=False)
    return fig


def reading(block: dict[str, Any]) -> str:
    """One sentence: the method closest to HMC, and how far MC dropout is."""
    rows = sorted(block["distances"], key=lambda r: r["total_variation"])
    best = rows[0]
    text = (
        f"Closest to the HMC posterior predictive: {best['name']} (total variation "
        f"{best['total_variation']:.3f}, same top class on {best['top1_agreement']:.0%} of "
        "test inputs)"
    )
    mc = [r for r in rows if "dropout" in r["name"].lower() and r is not best]
    if mc:
        text += (
            f"; {mc[0]['name']} is at {mc[0]['total_variation']:.3f} "
            f"({mc[0]['top1_agreement']:.0%} agreement)"
        )
    return text + "."


def section(metrics: dict[str, Any]) -> str | None:
    """The section's HTML, or ``None`` when ``metrics`` has no ``bayes`` block.

    Args:
        metrics: A parsed ``metrics.json``.

    Returns:
        ``<section id="bayes">...</section>`` or ``None``.
    """
    if "bayes" not in metrics:
        return None
    block = validate(metrics["bayes"])
    command = escape(block.get("command", COMMAND))
    head = f'<section id="bayes"><h2>{escape(TITLE)}</h2>'
    if not block["ran"]:
        why = "HMC, the full-Bayesian reference, did not run here"
        if block.get("reason"):
            why += f" (needs {block['reason']})"
        elif "estimate_s" in block and "budget_s" in block:
            why += (
                f": its worst case is about {block['estimate_s']:.0f} s, over this "
                f"run's budget of {block['budget_s']:.0f} s"
            )
        return (
            f"{head}<p class='reading'>{escape(why)}. To measure how close each method comes "
            f"to the Bayesian answer, run <code>{command}</code>.</p></section>"
        )
    notes = []
    if "rhat" in block:
        notes.append(f"HMC split R-hat on the predictive: {block['rhat']:.3f}")
    if "hmc_time_s" in block:
        notes.append(f"HMC sampling took {block['hmc_time_s']:.0f} s")
    note = f"<p class='note'>{escape('; '.join(notes))}. Reproduce: <code>{command}</code></p>"
    png = distance_bars(block["distances"])
    return (
        f"{head}<p class='reading'>{escape(reading(block))}</p>{note}"
        f"<figure>{plots_img(png)}</figure></section>"
    )


def plots_img(png: bytes) -> str:
    """An inline ``<img>`` for the chart (base64 PNG, no external URL)."""
    import base64

    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(TITLE)}">'


def demo_block(
    model: Any,
    train: tuple[Any, Any],
    test_x: Any,
    *,
    budget_s: float,
    mc_samples: int = 50,
    seed: int = 0,
    **hmc_options: Any,
) -> dict[str, Any]:
    """The ``bayes`` block for a classifier: HMC if its worst case fits ``budget_s``.

    One gradient evaluation of the full-batch posterior is timed
    (:meth:`dropkit.baselines.HMC.estimate_cost`); when the worst case (every
    iteration at ``max_steps`` leapfrog steps) fits the budget, HMC runs and the softmax and MC
    dropout predictives of ``model`` are measured against it; otherwise the
    block records the estimate and the command that runs the benchmark.

    Args:
        model: The trained classifier (with dropout), returning logits.
        train: Training ``(inputs, labels)``.
        test_x: Test inputs ``(N, ...)``.
        budget_s: Seconds HMC may take.
        mc_samples: MC-dropout passes.
        seed: Seed of HMC and the dropout masks.
        **hmc_options: Passed to :class:`~dropkit.baselines.HMC` (``samples``,
            ``warmup``, ``chains``, ``max_steps``, ...).

    Returns:
        A ``bayes`` block (see the module docstring).
    """
    import time

    from dropkit.baselines import HMC, softmax_predict
    from dropkit.metrics import top1_agreement, total_variation
    from dropkit.uncertainty import mc_predict

    block: dict[str, Any] = {"command": COMMAND, "budget_s": float(budget_s)}
    hmc = HMC(model, "classification", seed=seed, max_seconds=max(budget_s, 1e-9), **hmc_options)
    try:
        estimate = hmc.estimate_cost(*train)
    except ImportError:
        return {**block, "ran": False, "reason": "pip install 'dropkit[bayes]' (pyro-ppl)"}
    if estimate["worst_case_s"] > budget_s:
        return {**block, "ran": False, "estimate_s": float(estimate["worst_case_s"])}
    start = time.perf_counter()
    ref = hmc.fit(*train).predict(test_x)
    rows = []
    for name, res in (
        ("softmax", softmax_predict(model, test_x)),
        ("MC dropout", mc_predict(model, test_x, samples=mc_samples, seed=seed, progress=False)),
    ):
        rows.append(
            {
                "name": name,
                "total_variation": total_variation(res, ref),
                "top1_agreement": top1_agreement(res, ref),
            }
        )
    out = {**block, "ran": True, "distances": rows, "hmc_time_s": time.perf_counter() - start}
    rhat = hmc.diagnostics.predictive_rhat.get("max") if hmc.diagnostics else None
    if rhat is not None and math.isfinite(rhat):
        out["rhat"] = float(rhat)
    return out

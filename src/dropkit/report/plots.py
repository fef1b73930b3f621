"""The report's figures, drawn with matplotlib's Agg canvas into PNG bytes.

Each function takes one section of ``metrics.json`` (see
:mod:`dropkit.report`) and returns PNG bytes. No pyplot state is used, so the
functions are safe to call from threads and tests. Reliability diagrams follow
Guo et al. (2017); risk-coverage curves follow Geifman & El-Yaniv (2017).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from dropkit._optional import require

# A colour-blind-safe palette (Okabe & Ito, 2008), in a fixed order so a
# method keeps its colour across every figure of one report.
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#8C564B",
    "#000000",
)
_STYLE = {
    "font.size": 9,
    "font.family": "DejaVu Sans",
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9aa3ad",
    "axes.grid": True,
    "grid.color": "#e6e9ed",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "xtick.color": "#4a5563",
    "ytick.color": "#4a5563",
    "axes.labelcolor": "#2b3340",
    "figure.dpi": 100,
}


def _t(text: object) -> str:
    """A string from metrics.json as literal text: a "$" is a dollar sign, never TeX."""
    return str(text).replace("$", r"\$")


def colour(i: int) -> str:
    """Colour of the ``i``-th series, cycling through :data:`PALETTE`."""
    return PALETTE[i % len(PALETTE)]


def _figure(
    ncols: int,
    nrows: int = 1,
    *,
    width: float = 9.6,
    height: float = 3.0,
    sharey: bool = False,
) -> Any:
    mpl = require("matplotlib", "report", "dropkit.report")
    from matplotlib.figure import Figure

    with mpl.rc_context(_STYLE):
        fig = Figure(figsize=(width, height * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    return fig, axes


def _png(fig: Any) -> bytes:
    mpl = require("matplotlib", "report", "dropkit.report")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with mpl.rc_context(_STYLE):
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, facecolor="white")
    return buf.getvalue()


def _styled(draw: Any) -> Any:
    # rcParams apply at artist creation time, so drawing happens inside the context.
    def wrapper(*args: Any, **kwargs: Any) -> bytes:
        mpl = require("matplotlib", "report", "dropkit.report")
        with mpl.rc_context(_STYLE):
            fig = draw(*args, **kwargs)
        return _png(fig)

    wrapper.__doc__ = draw.__doc__
    wrapper.__name__ = draw.__name__
    wrapper.__wrapped__ = draw  # type: ignore[attr-defined]  # the Figure, for tests
    return wrapper


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(n, max_cols)
    return cols, math.ceil(n / cols)


def _hide_unused(axes: Any, used: int) -> None:
    for k, ax in enumerate(axes.flat):
        if k >= used:
            ax.set_visible(False)


@_styled
def learning_curves(settings: Sequence[dict[str, Any]]) -> Any:
    """Training vs validation loss per epoch, one panel per training setting.

    Args:
        settings: The ``settings`` section of ``metrics.json``.

    Returns:
        PNG bytes.
    """
    cols, rows = _grid(len(settings), 4)
    fig, axes = _figure(cols, rows, height=2.7)
    values = [v for s in settings for v in s["val_loss"] + s["train_loss"] if v > 0]
    low, top = min(values), max(values)
    for k, (ax, s) in enumerate(zip(axes.flat, settings)):
        ax.plot(s["epochs"], s["train_loss"], color=colour(0), lw=1.8, label="train")
        ax.plot(s["epochs"], s["val_loss"], color=colour(1), lw=1.8, label="validation")
        ax.fill_between(
            s["epochs"], s["train_loss"], s["val_loss"], color=colour(1), alpha=0.08, lw=0
        )
        ax.set_title(_t(s["name"]))
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.set_ylim(low / 1.5, top * 1.5)
        if k % cols == 0:
            ax.set_ylabel("NLL")
        if k == 0:
            ax.legend(loc="upper right")
    _hide_unused(axes, len(settings))
    return fig


@_styled
def reliability(methods: Sequence[dict[str, Any]]) -> Any:
    """Reliability diagrams (accuracy vs confidence per bin), one panel per method.

    Bar width follows the bins; the gap to the diagonal is shaded red, and
    the bin counts are drawn as a faint histogram on a second axis.

    Args:
        methods: The ``methods`` section of ``metrics.json``.

    Returns:
        PNG bytes.
    """
    chosen = [m for m in methods if m.get("reliability")]
    cols, rows = _grid(len(chosen), 4)
    fig, axes = _figure(cols, rows, height=2.6)
    for k, (ax, m) in enumerate(zip(axes.flat, chosen)):
        rel = m["reliability"]
        n_bins = len(rel["count"])
        width = 1.0 / n_bins
        centres = [(i + 0.5) * width for i in range(n_bins)]
        acc = [a if a is not None else 0.0 for a in rel["accuracy"]]
        conf = [c if c is not None else centres[i] for i, c in enumerate(rel["confidence"])]
        filled = [c > 0 for c in rel["count"]]
        ax.bar(
            [c for c, f in zip(centres, filled) if f],
            [a for a, f in zip(acc, filled) if f],
            width=width * 0.92,
            color=colour(k),
            alpha=0.85,
            label="accuracy",
        )
        for c, a, cf, f in zip(centres, acc, conf, filled):
            if f:
                ax.bar(c, cf - a, bottom=a, width=width * 0.92, color="#d62728", alpha=0.25, lw=0)
        ax.plot([0, 1], [0, 1], ls="--", color="#4a5563", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{_t(m['name'])}\nECE {m['ece']:.3f}", fontsize=9)
        ax.set_xlabel("confidence")
        if k % cols == 0:
            ax.set_ylabel("accuracy")
    _hide_unused(axes, len(chosen))
    return fig


def _histogram_edges(values: Sequence[float], bins: int) -> list[float]:
    lo, hi = min(values), max(values)
    if hi <= lo:
        hi = lo + 1.0
    step = (hi - lo) / bins
    return [lo + i * step for i in range(bins + 1)]


@_styled
def uncertainty_histograms(methods: Sequence[dict[str, Any]]) -> Any:
    """Histograms of each method's OOD score, in-distribution vs held-out classes.

    Every panel shares one y-axis (fraction of inputs, log scale), so the
    heights compare across methods.

    Args:
        methods: The ``methods`` section of ``metrics.json``.

    Returns:
        PNG bytes.
    """
    chosen = [m for m in methods if m.get("scores_in") and m.get("scores_out")]
    cols, rows = _grid(len(chosen), 4)
    fig, axes = _figure(cols, rows, height=2.5, sharey=True)
    for k, (ax, m) in enumerate(zip(axes.flat, chosen)):
        edges = _histogram_edges([*m["scores_in"], *m["scores_out"]], 30)
        for scores, c in ((m["scores_in"], colour(0)), (m["scores_out"], colour(1))):
            # fractions of each set, log scale: the tails are where the sets differ
            weights = [1.0 / len(scores)] * len(scores)
            ax.hist(scores, bins=edges, weights=weights, color=c, alpha=0.6, log=True)
        ax.set_title(f"{_t(m['name'])}\nAUROC {m['auroc']:.3f}", fontsize=9)
        ax.set_xlabel(_t(m.get("ood_score") or "score"))
        ax.grid(False, axis="x")
        if k == 0:
            ax.legend(["in-distribution", "held-out classes"], loc="upper right")
        if k % cols == 0:
            ax.set_ylabel("fraction of inputs")
        else:
            ax.tick_params(labelleft=False)
    _hide_unused(axes, len(chosen))
    return fig


@_styled
def risk_coverage(methods: Sequence[dict[str, Any]]) -> Any:
    """Selective risk vs coverage for every method on one axis.

    Args:
        methods: The ``methods`` section of ``metrics.json``.

    Returns:
        PNG bytes.
    """
    fig, axes = _figure(1, width=7.2, height=3.4)
    ax = axes[0, 0]
    first_error = 1.0
    for k, m in enumerate(methods):
        rc = m.get("risk_coverage")
        if not rc:
            continue
        ax.plot(
            rc["coverage"],
            rc["risk"],
            color=colour(k),
            lw=1.8,
            label=f"{_t(m['name'])} (AURC {m['aurc']:.3g})",
        )
        errs = [c for c, r in zip(rc["coverage"], rc["risk"]) if r > 0]
        first_error = min([first_error, *errs[:1]])
    # Zoom onto the part of the curve where errors appear (risk is 0 before).
    left = max(0.0, first_error - 0.05) if first_error < 1.0 else 0.0
    ax.set_xlabel("coverage (fraction of inputs answered, most confident first)")
    ax.set_ylabel("risk (error rate)")
    ax.set_xlim(round(left, 2), 1)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    return fig


@_styled
def sweep(section: dict[str, Any]) -> Any:
    """Validation metric (and accuracy) against the drop rate from the sweep.

    Args:
        section: The ``sweep`` section of ``metrics.json``.

    Returns:
        PNG bytes.
    """
    trials = sorted(section["trials"], key=lambda t: t["p"])
    fig, axes = _figure(1, width=7.2, height=3.0)
    ax = axes[0, 0]
    ps = [t["p"] for t in trials]
    ax.plot(
        ps, [t["value"] for t in trials], "o-", color=colour(0), lw=1.8, label=_t(section["metric"])
    )
    best = min(trials, key=lambda t: t["value"] * (1 if section["lower_is_better"] else -1))
    ax.plot([best["p"]], [best["value"]], "*", color=colour(1), ms=14, label="best")
    ax.set_xlabel("drop probability p")
    ax.set_ylabel(_t(section["metric"]))
    if all(t.get("val_acc") is not None for t in trials):
        twin = ax.twinx()
        accs = [t["val_acc"] for t in trials]
        twin.plot(ps, accs, "s--", color=colour(2), lw=1.2, ms=4)
        twin.set_ylabel("validation accuracy", color=colour(2))
        # accuracy lives in [0, 1]: pad below the lowest point, never above 1
        low, high = min(accs), max(accs)
        pad = max(0.01, 0.15 * (high - low))
        twin.set_ylim(max(0.0, low - pad), min(1.0, high + pad) if high < 1.0 else 1.0)
        twin.grid(False)
        twin.spines["right"].set_visible(True)
    ax.legend(loc="best")
    return fig


@_styled
def convergence(section: dict[str, Any]) -> Any:
    """NLL, accuracy and the change of the MC estimate against the sample count T.

    Args:
        section: The ``convergence`` section of ``metrics.json``.

    Returns:
        PNG bytes.
    """
    fig, axes = _figure(3, width=9.6, height=2.8)
    t = section["samples"]
    panels = (
        ("nll", "test NLL", False),
        ("accuracy", "test accuracy", False),
        ("change", "mean L1 distance to T max", True),
    )
    for k, (key, label, log) in enumerate(panels):
        ax = axes[0, k]
        xs, ys = t, section[key]
        if log:
            # The last point is the reference itself (exactly 0): not drawable on a log axis.
            pairs = [(a, b) for a, b in zip(t, ys) if b > 0]
            xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
        ax.plot(xs, ys, "o-", color=colour(k), lw=1.8, ms=4)
        ax.set_xscale("log")
        if log and len(ys):
            ax.set_yscale("log")
        ax.set_xlabel("MC samples T")
        ax.set_title(label)
    return fig

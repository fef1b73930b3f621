"""``dropkit demo``: everything dropkit does, offline, on scikit-learn's digits.

The pipeline (all on CPU, on one torch thread; timings in BENCHMARKS.md):

1. **Data.** The 8x8 digits (1,797 images bundled with scikit-learn). Classes
   0-4 are in-distribution, split 25/25/50 into train / validation / test;
   every image of classes 5-9 is the out-of-distribution (OOD) set.
2. **Sweep.** A small MLP (64 -> H -> H -> 5, ReLU, dropout after each hidden
   layer) is trained once per drop rate on a grid; the validation NLL picks
   the rate ``p*`` (the best rate above 0, so MC dropout has noise to sample).
3. **Training settings** (learning curves, training NLL measured with dropout
   off): no dropout (the sweep's ``p = 0`` run), fixed ``p*`` (the sweep's
   run), a schedule (linear decay from ``2 p*`` to ``p* / 2`` through
   :class:`dropkit.training.DropoutScheduler`) and
   :class:`dropkit.nn.ConcreteDropout` (learned rate). An
   :class:`dropkit.training.OverfitMonitor` reads every curve.
4. **Uncertainty methods**, on the ``p*`` network unless said otherwise:
   deterministic softmax, temperature scaling, MC dropout
   (:func:`dropkit.mc_predict`), last-layer Laplace, and a deep ensemble of
   networks trained without dropout. Metrics: accuracy, NLL, ECE, Brier, OOD
   AUROC of the predictive entropy, AURC, and cost.
5. **Convergence** of the MC estimate with the number of samples ``T``.

It writes ``metrics.json`` (schema in :mod:`dropkit.report`), ``config.json``
and ``report.html`` into the output folder as one set: all three are written
into a hidden staging folder inside it, then renamed into place with Ctrl-C
held off, ``report.html`` last. An interrupted run therefore leaves the
folder exactly as it was (or, once the renames began, with the complete new
set), never a mix of two runs.

References:
    Gal & Ghahramani (2016), "Dropout as a Bayesian Approximation", ICML.
    Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS.
    Guo et al. (2017), "On Calibration of Modern Neural Networks", ICML.
    Lakshminarayanan et al. (2017), "Simple and Scalable Predictive
    Uncertainty Estimation using Deep Ensembles", NeurIPS.
    Daxberger et al. (2021), "Laplace Redux", NeurIPS.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dropkit._io import atomic_write_text
from dropkit._optional import require
from dropkit.demo.digits import IN_CLASSES, OOD_CLASSES, DigitsSplit
from dropkit.demo.training import DemoConfig, SweepRuns, load_data, make_mlp, train

FILES = ("config.json", "metrics.json", "report.html")  # commit order: report last


class DemoInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_demo`, saying whether the output set was committed.

    Attributes:
        committed: True when the new ``report.html``, ``metrics.json`` and
            ``config.json`` were all in place before the interruption; False
            when none of them was (the folder is as it was).
    """

    def __init__(self, committed: bool) -> None:
        super().__init__("demo interrupted")
        self.committed = committed


def _write(out: Path, name: str, payload: Any) -> Path:
    return atomic_write_text(out / name, json.dumps(payload, indent=1) + "\n")


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold a Ctrl-C off while the output set is renamed; deliver it afterwards.

    The SIGINT handler is swapped for one that only records the signal (a
    signal mask would not do: torch's worker threads may receive the signal),
    and the recorded Ctrl-C is raised once the block is done. Outside the main
    thread, where handlers cannot be set, nothing is held.
    """
    seen: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if seen and previous is not signal.SIG_IGN:
            if callable(previous):
                previous(signal.SIGINT, None)
            raise KeyboardInterrupt


def _commit(staging: Path, out: Path, state: dict[str, bool]) -> dict[str, Path]:
    """Rename the staged files into ``out``, ``report.html`` last."""
    with _sigint_held():
        for name in FILES:
            (staging / name).replace(out / name)
        state["committed"] = True
    return {
        "report": out / "report.html",
        "metrics": out / "metrics.json",
        "config": out / "config.json",
    }


def run_demo(
    out: str | Path, *, quick: bool = False, seed: int = 0, progress: bool = False
) -> dict[str, Path]:
    """Run the whole demo and write its three files into ``out``.

    Args:
        out: Output folder (must exist and be writable).
        quick: Use the quick configuration (fewer epochs, members, samples).
        seed: Seed of the split, initialisations and dropout masks.
        progress: Show a progress bar on stderr.

    Returns:
        Paths of ``report.html``, ``metrics.json`` and ``config.json``.

    Raises:
        DemoInterrupted: On Ctrl-C, saying whether the new files were all
            committed (see the module docstring); nothing else is left behind.
    """
    # The demo's networks are tiny: one thread is fastest, and it keeps
    # OpenMP from spin-waiting against other busy processes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = Path(out)
    state = {"committed": False}
    staging: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".dropkit-demo-", dir=out))
        _run(quick=quick, seed=seed, progress=progress, staging=staging)
        return _commit(staging, out, state)
    except KeyboardInterrupt as exc:
        raise DemoInterrupted(state["committed"]) from exc
    finally:
        torch.set_num_threads(threads)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _run(*, quick: bool, seed: int, progress: bool, staging: Path) -> dict[str, Any]:
    from dropkit.demo.methods import compare_methods, convergence
    from dropkit.report import render

    cfg = DemoConfig.make(quick=quick, seed=seed)
    new_members = cfg.ensemble_members - (1 if 0.0 in cfg.sweep_ps else 0)
    stages = len(cfg.sweep_ps) + 2 + new_members + 4
    bar = _Bar(stages, progress)
    try:
        return _stages(cfg, bar, render, compare_methods, convergence, staging)
    finally:
        bar.close()


def _stages(
    cfg: DemoConfig,
    bar: _Bar,
    render: Any,
    compare_methods: Any,
    convergence: Any,
    staging: Path,
) -> dict[str, Any]:
    data = load_data(cfg)

    sweep_runs = {}
    for p in cfg.sweep_ps:
        bar.next(f"sweep p={p:g}")
        # common random numbers: every rate starts from the same weights and data order
        model = make_mlp(cfg, p, seed=cfg.seed * 1000)
        sweep_runs[p] = (model, train(model, data, cfg, seed=cfg.seed * 1000, fixed_p=p))
    positive = [p for p in cfg.sweep_ps if p > 0]
    best_p = min(positive, key=lambda p: sweep_runs[p][1]["val_loss"][-1])
    settings = _settings(cfg, data, sweep_runs, best_p, bar)
    methods, ensemble_extra = compare_methods(cfg, data, sweep_runs, best_p, bar)
    bar.next("MC convergence")
    conv = convergence(cfg, data, sweep_runs[best_p][0])
    bar.next("report")
    metrics = _assemble(cfg, data, settings, methods, sweep_runs, best_p, conv, ensemble_extra)
    from dropkit.report import bayes  # HMC only if it fits the demo's budget (DEMO_BUDGET_S)

    train_xy, model = (data.x_train, data.y_train), sweep_runs[best_p][0]
    metrics["bayes"] = bayes.demo_block(model, train_xy, data.x_test, budget_s=bayes.DEMO_BUDGET_S)
    metrics["timings"] = dict(bar.timings)
    _write(staging, "config.json", asdict(cfg))
    render(_write(staging, "metrics.json", metrics), staging / "report.html")
    return metrics


def _settings(
    cfg: DemoConfig, data: DigitsSplit, sweep_runs: SweepRuns, best_p: float, bar: _Bar
) -> list[dict[str, Any]]:
    import dropkit.schedules as schedules
    from dropkit.training import DropoutScheduler

    out = []
    if 0.0 in sweep_runs:
        out.append({"name": "no dropout", "description": "p = 0", **sweep_runs[0.0][1]})
    out.append(
        {
            "name": f"fixed p={best_p:g}",
            "description": "best rate of the sweep",
            **sweep_runs[best_p][1],
        }
    )
    bar.next("schedule")
    model = make_mlp(cfg, best_p, seed=cfg.seed * 1000 + 101)
    steps = cfg.epochs * -(-len(data.y_train) // cfg.batch_size)
    start, end = min(2 * best_p, 0.7), best_p / 2
    scheduler = DropoutScheduler(model, schedules.linear(start, end, steps))
    curves = train(model, data, cfg, seed=cfg.seed * 1000 + 101, scheduler=scheduler)
    out.append({"name": "schedule", "description": f"linear decay {start:g} -> {end:g}", **curves})
    bar.next("ConcreteDropout")
    model = make_mlp(cfg, 0.0, seed=cfg.seed * 1000 + 102, concrete_n=len(data.y_train))
    curves = train(model, data, cfg, seed=cfg.seed * 1000 + 102)
    out.append({"name": "ConcreteDropout", "description": "learned rate", **curves})
    return out


def _assemble(
    cfg: DemoConfig,
    data: DigitsSplit,
    settings: list[dict[str, Any]],
    methods: list[dict[str, Any]],
    sweep_runs: SweepRuns,
    best_p: float,
    conv: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    from dropkit import __version__

    trials = [
        {"p": p, "value": run["val_loss"][-1], "val_acc": run["val_acc"][-1]}
        for p, (_, run) in sorted(sweep_runs.items())
    ]
    verdicts = [monitor_note(s["name"], s["verdict"], trials, best_p) for s in settings]
    settings = [{k: v for k, v in s.items() if k != "verdict"} for s in settings]
    return {
        "schema_version": 1,
        "title": "dropkit demo: dropout and uncertainty on digits",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dropkit_version": __version__,
        "dataset": {
            "name": "digits",
            "description": "scikit-learn digits (8x8), trained on classes 0-4",
            "in_classes": list(IN_CLASSES),
            "ood_classes": list(OOD_CLASSES),
            "n_train": len(data.y_train),
            "n_val": len(data.y_val),
            "n_test": len(data.y_test),
            "n_ood": len(data.x_ood),
        },
        "settings": settings,
        "methods": methods,
        "ece_bins": cfg.ece_bins,
        "ece_binning": "width",
        "sweep": {
            "parameter": "p",
            "metric": "validation NLL",
            "lower_is_better": True,
            "engine": f"grid over {len(trials)} rates, {cfg.epochs} epochs each",
            "trials": trials,
        },
        "convergence": conv,
        "notes": [
            *notes,
            *(v for v in verdicts if v),
            f"Chosen rate p* = {best_p:.2g} (best validation NLL above 0 in the sweep).",
        ],
    }


def _rate(p: float) -> str:
    return f"{p:.2g}"


def monitor_note(
    name: str, verdict: dict[str, Any] | None, trials: list[dict[str, Any]], best_p: float
) -> str | None:
    """The OverfitMonitor's last verdict on one run, read against the sweep.

    The monitor judges one run's curves and advises a direction (raise or
    lower p); the sweep measured other rates directly. So the note says what
    the sweep found in that direction instead of contradicting the chosen
    rate ``p*``.

    Args:
        name: The training setting.
        verdict: ``regime``, ``action``, ``p`` (the run's final rate) and
            ``message`` from :func:`dropkit.demo.training.train`, or None.
        trials: The sweep's ``{"p", "value"}`` (validation NLL) trials.
        best_p: The chosen rate ``p*``.

    Returns:
        One sentence, or None without a verdict.

    Example:
        >>> trials = [{"p": 0.0, "value": 0.04}, {"p": 0.2, "value": 0.03},
        ...           {"p": 0.5, "value": 0.05}]
        >>> v = {"regime": "healthy", "action": "lower_dropout", "p": 0.2, "message": ""}
        >>> print(monitor_note("fixed p=0.2", v, trials, 0.2))  # doctest: +NORMALIZE_WHITESPACE
        OverfitMonitor on fixed p=0.2 (final p 0.2): healthy, it would lower p; the best
        rate below 0.2 that the sweep measured, p = 0, reached validation NLL 0.040
        against 0.030 at p* = 0.2, so p* stands.
    """
    if not verdict:
        return None
    head = f"OverfitMonitor on {name} (final p {_rate(verdict['p'])}): {verdict['regime']}"
    action, p_now = verdict["action"], float(verdict["p"])
    if action not in ("raise_dropout", "lower_dropout"):
        return f"{head}; next step: {verdict['message']}"
    up = action == "raise_dropout"
    head += f", it would {'raise' if up else 'lower'} p"
    ahead = [t for t in trials if (t["p"] > p_now if up else t["p"] < p_now)]
    tried = [t for t in ahead if math.isfinite(t["value"])]
    chosen = next((t for t in trials if t["p"] == best_p), None)
    if not tried or chosen is None:
        return f"{head}; the sweep tried no rate {'above' if up else 'below'} {_rate(p_now)}."
    best = min(tried, key=lambda t: t["value"])
    side = "above" if up else "below"
    if best["p"] == best_p:
        return (
            f"{head}; the sweep agrees: its chosen p* = {_rate(best_p)} lies {side} this "
            f"run's rate (validation NLL {chosen['value']:.3f})."
        )
    versus = (
        f"the best rate {side} {_rate(p_now)} that the sweep measured, p = {_rate(best['p'])}, "
        f"reached validation NLL {best['value']:.3f} against {chosen['value']:.3f} at "
        f"p* = {_rate(best_p)}"
    )
    if best["value"] >= chosen["value"]:
        return f"{head}; {versus}, so p* stands."
    if best["p"] == 0:
        return (
            f"{head}; {versus}: no dropout fits this split better, and p* is the best rate "
            "above 0, kept so that MC dropout has something to sample."
        )
    return f"{head}; {versus}."  # pragma: no cover - p* is the best positive rate


class _Bar:
    """A tqdm bar over the demo's stages on stderr (or nothing) that times each stage."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            tqdm = require("tqdm", "report", "dropkit demo").tqdm
            self._bar = tqdm(total=total, unit="stage", leave=False)
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._t0 = time.perf_counter()

    def next(self, desc: str) -> None:
        self._finish()
        self._stage = desc
        if self._bar is not None:
            self._bar.set_description(desc)

    def _finish(self) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            self.timings[self._stage] = round(now - self._t0, 3)
            if self._bar is not None:
                self._bar.update(1)
        self._t0 = now

    def close(self) -> None:
        self._finish()
        self._stage = None
        if self._bar is not None:
            self._bar.close()

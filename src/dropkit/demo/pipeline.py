"""``dropkit demo``: everything dropkit does, offline, on scikit-learn's digits.

The pipeline (all on CPU, a few minutes on 2 cores; ``--quick`` under 30 s):

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

It writes ``metrics.json`` (schema in :mod:`dropkit.report`), ``report.html``
and ``config.json`` into the output folder, each atomically.

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
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dropkit.demo.training import (
    IN_CLASSES,
    OOD_CLASSES,
    Data,
    DemoConfig,
    load_data,
    make_mlp,
    train,
)
from dropkit.integrations._extras import require
from dropkit.report._atomic import atomic_write_text


def _write(out: Path, name: str, payload: Any) -> Path:
    return atomic_write_text(out / name, json.dumps(payload, indent=1) + "\n")


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
    """
    # The demo's networks are tiny: one thread is fastest, and it keeps
    # OpenMP from spin-waiting against other busy processes (with one core
    # taken elsewhere, two threads made the quick demo 8x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(Path(out), quick=quick, seed=seed, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, *, quick: bool, seed: int, progress: bool) -> dict[str, Path]:
    from dropkit.demo.methods import compare_methods, convergence
    from dropkit.report import render

    cfg = DemoConfig.make(quick=quick, seed=seed)
    new_members = cfg.ensemble_members - (1 if 0.0 in cfg.sweep_ps else 0)
    stages = len(cfg.sweep_ps) + 2 + new_members + 4
    bar = _Bar(stages, progress)
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
    paths = {
        "metrics": _write(out, "metrics.json", metrics),
        "config": _write(out, "config.json", asdict(cfg)),
    }
    paths["report"] = render(paths["metrics"], out / "report.html")
    bar.close()
    return {"report": paths["report"], "metrics": paths["metrics"], "config": paths["config"]}


def _settings(
    cfg: DemoConfig, data: Data, sweep_runs: dict[float, Any], best_p: float, bar: _Bar
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
    data: Data,
    settings: list[dict[str, Any]],
    methods: list[dict[str, Any]],
    sweep_runs: dict[float, Any],
    best_p: float,
    conv: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    from dropkit import __version__

    trials = [
        {"p": p, "value": run["val_loss"][-1], "val_acc": run["val_acc"][-1]}
        for p, (_, run) in sorted(sweep_runs.items())
    ]
    verdicts = [f"OverfitMonitor on {s['name']}: {s['verdict']}" for s in settings if s["verdict"]]
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
        "notes": [*notes, *verdicts, f"Chosen rate p* = {best_p:g} (best validation NLL above 0)."],
    }


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

"""The demo's uncertainty comparison and MC convergence study.

Deterministic softmax, temperature scaling, MC dropout and last-layer Laplace
share one network (trained with the sweep's rate ``p*``); the deep ensemble
has its own members, trained without dropout. Every method is scored with
the same :mod:`dropkit.metrics` on the same test and OOD inputs:

* OOD AUROC of the predictive entropy (in-distribution test vs classes 5-9);
  for MC dropout the mutual-information AUROC goes into the notes;
* the risk-coverage curve abstains on ``1 - max p`` first (the default of
  :func:`dropkit.metrics.risk_coverage`);
* ``time_s`` is the wall time beyond training the base network: post-hoc
  fitting (temperature, Laplace), the ensemble's extra members, and
  predicting the test and OOD sets.

References:
    Guo et al. (2017), "On Calibration of Modern Neural Networks", ICML.
    Gal & Ghahramani (2016), "Dropout as a Bayesian Approximation", ICML.
    Lakshminarayanan et al. (2017), "Deep Ensembles", NeurIPS.
    Daxberger et al. (2021), "Laplace Redux", NeurIPS.
    Hendrycks & Gimpel (2017), "A Baseline for Detecting Misclassified and
    Out-of-Distribution Examples", ICLR.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import torch
from torch import nn

from dropkit.demo.digits import DigitsSplit
from dropkit.demo.training import DemoConfig, SweepRuns, make_mlp, train
from dropkit.uncertainty.result import MCResult


class Stages(Protocol):
    """The demo's progress bar, as the methods see it."""

    def next(self, desc: str) -> None:
        """Start the stage ``desc``."""


def _r(x: float, digits: int = 6) -> float | None:
    return None if not math.isfinite(x) else round(float(x), digits)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def score_method(
    name: str,
    cfg: DemoConfig,
    data: DigitsSplit,
    test: MCResult,
    ood: MCResult,
    *,
    passes: int,
    time_s: float,
    params: int,
) -> dict[str, Any]:
    """One ``methods`` entry of ``metrics.json`` from test and OOD results.

    The scalar quality columns are those of
    :func:`dropkit.baselines.compare.score_predictive`; the entry adds the
    report's curves (reliability, risk-coverage, OOD scores).

    Args:
        name: Method name shown in the report.
        cfg: The configuration (ECE bins).
        data: The split (test labels).
        test: The method's predictive on the in-distribution test set.
        ood: Its predictive on the OOD set.
        passes: Forward passes per input.
        time_s: Wall time (see the module docstring).
        params: Stored parameters.

    Returns:
        The entry, following the schema in :mod:`dropkit.report`.
    """
    from dropkit import metrics
    from dropkit.baselines.compare import score_predictive

    y = data.y_test
    probs = test.mean
    quality = score_predictive(probs, y, n_bins=cfg.ece_bins)
    rel = metrics.reliability_diagram(probs, y, n_bins=cfg.ece_bins)
    rc = metrics.risk_coverage(probs, y)
    # a classifier's MCResult always holds the entropy (None is for regression)
    s_in, s_out = (
        cast(torch.Tensor, test.predictive_entropy),
        cast(torch.Tensor, ood.predictive_entropy),
    )
    is_ood = torch.cat([torch.zeros(len(s_in)), torch.ones(len(s_out))]).bool()
    return {
        "name": name,
        "accuracy": _r(quality["accuracy"]),
        "nll": _r(quality["nll"]),
        "ece": _r(quality["ece"]),
        "brier": _r(quality["brier"]),
        "auroc": _r(metrics.auroc(torch.cat([s_in, s_out]), is_ood)),
        "aurc": _r(quality["aurc"]),
        "ood_score": "predictive entropy",
        "forward_passes": int(passes),
        "time_s": round(time_s, 4),
        "params": int(params),
        "reliability": {
            "confidence": [_r(v, 5) for v in rel.confidence.tolist()],
            "accuracy": [_r(v, 5) for v in rel.accuracy.tolist()],
            "count": [int(c) for c in rel.counts.tolist()],
        },
        "scores_in": [_r(v, 5) for v in s_in.tolist()],
        "scores_out": [_r(v, 5) for v in s_out.tolist()],
        "risk_coverage": {
            "coverage": [_r(v, 5) for v in rc.coverage.tolist()],
            "risk": [_r(v, 5) for v in rc.risk.tolist()],
        },
    }


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def compare_methods(
    cfg: DemoConfig, data: DigitsSplit, sweep_runs: SweepRuns, best_p: float, bar: Stages
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run every uncertainty method and score it (see the module docstring).

    Training and fitting run before the first MC-dropout call: on some CPUs
    the threaded dropout kernel's thread pool slows the many small ops of
    training down afterwards, and the order keeps timings comparable.

    Args:
        cfg: The configuration.
        data: The split.
        sweep_runs: ``p -> (trained model, curves)`` from the sweep.
        best_p: The chosen rate ``p*``; its network is shared.
        bar: The demo's progress bar (``next(desc)``).

    Returns:
        The ``methods`` entries (softmax, temperature scaling, MC dropout,
        Laplace, ensemble) and notes for the report.
    """
    from dropkit.baselines.ensemble import DeepEnsemble
    from dropkit.baselines.laplace import LastLayerLaplace
    from dropkit.baselines.softmax import softmax_predict
    from dropkit.baselines.temperature import TemperatureScaling
    from dropkit.metrics import auroc
    from dropkit.uncertainty import mc_predict

    model = sweep_runs[best_p][0].eval()
    size = _params(model)
    x_test, x_ood = data.x_test, data.x_ood
    rows: dict[str, dict[str, Any]] = {}
    notes = []
    members, member_secs = _ensemble_members(cfg, data, sweep_runs, bar)

    bar.next("softmax, temperature, Laplace")
    (t, o), secs = _timed(lambda: (softmax_predict(model, x_test), softmax_predict(model, x_ood)))
    rows["softmax"] = score_method("Softmax", cfg, data, t, o, passes=1, time_s=secs, params=size)

    def temperature() -> tuple[Any, Any, float]:
        with torch.no_grad():
            val_logits, test_logits, ood_logits = (model(x) for x in (data.x_val, x_test, x_ood))
        ts = TemperatureScaling().fit(val_logits, data.y_val)
        wrap = [_as_result(ts.predict_proba(z)) for z in (test_logits, ood_logits)]
        return wrap[0], wrap[1], ts.temperature

    (t, o, temp), secs = _timed(temperature)
    rows["ts"] = score_method(
        "Temperature scaling", cfg, data, t, o, passes=1, time_s=secs, params=size
    )
    notes.append(f"Temperature fitted on validation NLL: T = {temp:.3f}.")

    def laplace() -> tuple[Any, Any, float]:
        la = LastLayerLaplace(model, prior_optimization="gridsearch")
        la.fit(data.x_train, data.y_train, val=(data.x_val, data.y_val))
        return la.predict(x_test), la.predict(x_ood), la.prior_precision

    (t, o, prior), secs = _timed(laplace)
    rows["laplace"] = score_method(
        "Last-layer Laplace", cfg, data, t, o, passes=1, time_s=secs, params=size
    )
    notes.append(
        f"Last-layer Laplace (Kronecker-factored): prior precision {prior:.3g}, chosen by "
        "grid search on validation NLL; probit predictive."
    )

    ens = DeepEnsemble(members)
    (t, o), secs = _timed(lambda: (ens.predict(x_test), ens.predict(x_ood)))
    rows["ensemble"] = score_method(
        f"Deep ensemble (M={len(members)})",
        cfg,
        data,
        t,
        o,
        passes=len(members),
        time_s=member_secs + secs,
        params=ens.num_parameters,
    )

    bar.next("MC dropout")
    samples = cfg.mc_samples

    def mc() -> tuple[Any, Any]:
        kw: dict[str, Any] = {"samples": samples, "seed": cfg.seed, "progress": False}
        return mc_predict(model, x_test, **kw), mc_predict(model, x_ood, **kw)

    (t, o), secs = _timed(mc)
    rows["mc"] = score_method(
        f"MC dropout (T={samples})", cfg, data, t, o, passes=samples, time_s=secs, params=size
    )
    mi = torch.cat([t.mutual_information, o.mutual_information])
    is_ood = torch.cat([torch.zeros(len(x_test)), torch.ones(len(x_ood))]).bool()
    notes.append(
        f"MC dropout with mutual information (epistemic part) as the OOD score: AUROC "
        f"{auroc(mi, is_ood):.3f} (predictive entropy: {rows['mc']['auroc']:.3f})."
    )
    notes.append(
        f"Softmax, temperature scaling, MC dropout and Laplace share one network trained "
        f"with p = {best_p:g}; the ensemble's {len(members)} members are trained without dropout."
    )
    order = ("softmax", "ts", "mc", "laplace", "ensemble")
    return [rows[k] for k in order], notes


def _as_result(probs: torch.Tensor) -> MCResult:
    return MCResult.from_samples(probs.double().unsqueeze(0))


def _ensemble_members(
    cfg: DemoConfig, data: DigitsSplit, sweep_runs: SweepRuns, bar: Stages
) -> tuple[list[nn.Module], float]:
    members: list[nn.Module] = []
    extra = 0.0
    if 0.0 in sweep_runs:
        members.append(sweep_runs[0.0][0].eval())
    k = 0
    while len(members) < cfg.ensemble_members:
        bar.next(f"ensemble member {len(members) + 1}")
        model = make_mlp(cfg, 0.0, seed=cfg.seed * 1000 + 500 + k)
        curves = train(model, data, cfg, seed=cfg.seed * 1000 + 500 + k)
        extra += curves["time_s"]
        members.append(model.eval())
        k += 1
    return members, extra


def convergence(cfg: DemoConfig, data: DigitsSplit, model: nn.Module) -> dict[str, Any]:
    """NLL, accuracy and distance to the largest-T estimate for growing T.

    One :func:`dropkit.mc_predict` call keeps ``T_max`` samples; the estimate
    at ``T`` averages the first ``T`` of them (probabilities, not logits).

    Args:
        cfg: The configuration (``convergence_samples``).
        data: The split (test set).
        model: The dropout network.

    Returns:
        The ``convergence`` section of ``metrics.json``; ``change`` is the mean
        over inputs of the L1 distance between the T and ``T_max`` estimates.
    """
    from dropkit import metrics
    from dropkit.uncertainty import mc_predict

    ts = sorted(cfg.convergence_samples)
    result = mc_predict(
        model, data.x_test, samples=ts[-1], seed=cfg.seed + 7, keep_samples=True, progress=False
    )
    assert result.samples is not None  # keep_samples=True
    samples = result.samples.double()  # (S, N, C)
    cumulative = samples.cumsum(0)
    final = cumulative[-1] / ts[-1]
    section: dict[str, Any] = {"samples": ts, "nll": [], "accuracy": [], "change": []}
    for t in ts:
        probs = cumulative[t - 1] / t
        section["nll"].append(_r(metrics.nll(probs, data.y_test)))
        section["accuracy"].append(_r(metrics.accuracy(probs, data.y_test)))
        section["change"].append(_r((probs - final).abs().sum(-1).mean().item(), 8))
    return section

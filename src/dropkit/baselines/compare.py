"""``compare_uncertainty``: MC dropout against its rivals, quality next to cost.

Each method predicts an :class:`MCResult` on the same in-distribution test set,
an optional OOD set and an optional shifted test set; the same metrics are
applied to all (accuracy, NLL, ECE, Brier, AURC; AUROC / AUPR-out / FPR at 95%
TPR of every uncertainty score the method has, OOD = positive). With a
validation set, temperature scaling is fitted on each method's validation
predictive and the calibrated test NLL / ECE / Brier are reported alongside.

Cost columns (prediction on the test set only; training is the user's):

* ``forward_passes``: stochastic passes per input (MC samples ``S``, ensemble
  members ``M``, 1 for softmax and Laplace).
* ``wall_time_s``: seconds of the test-set prediction call.
* ``peak_memory_mb``: peak tensor memory created by that call, measured with a
  dispatch mode (see ``dropkit.baselines._cost``); ``None`` if disabled.
* ``parameters``: scalars held at prediction (all ensemble members; for Laplace
  the model plus the last-layer posterior size).
* ``fit_time_s``: post-hoc fitting (Laplace Hessian and prior, temperature).

References:
    Gal, Ghahramani (2016). Dropout as a Bayesian approximation. ICML.
    Ovadia et al. (2019). Can you trust your model's uncertainty? Evaluating
    predictive uncertainty under dataset shift. NeurIPS.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from dropkit._validation import check_choice, check_int, check_module
from dropkit.baselines._common import count_parameters
from dropkit.baselines._cost import measure
from dropkit.baselines.ensemble import DeepEnsemble
from dropkit.baselines.laplace import LastLayerLaplace
from dropkit.baselines.softmax import softmax_predict
from dropkit.baselines.temperature import TemperatureScaling
from dropkit.metrics import (
    accuracy,
    aupr_out,
    aurc,
    auroc,
    brier,
    ece,
    fpr_at_tpr,
    nll,
    ood_scores,
)
from dropkit.uncertainty.result import MCResult

METHODS = ("softmax", "mc_dropout", "ensemble", "laplace")
WHERE = "compare_uncertainty"


@dataclass
class MethodReport:
    """Quality and cost of one method (see the module docstring for each field)."""

    method: str
    accuracy: float
    nll: float
    ece: float
    brier: float
    aurc: float
    forward_passes: int
    wall_time_s: float
    peak_memory_mb: float | None
    parameters: int
    fit_time_s: float = 0.0
    ood: dict[str, dict[str, float]] = field(default_factory=dict)
    shifted: dict[str, float] = field(default_factory=dict)
    temperature: float | None = None
    calibrated: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat dict (nested metrics become ``ood.<score>.<metric>`` keys)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, dict):
                        out.update({f"{key}.{k}.{kk}": vv for kk, vv in v.items()})
                    else:
                        out[f"{key}.{k}"] = v
            else:
                out[key] = value
        return out


@dataclass
class Comparison:
    """Result of :func:`compare_uncertainty`: one :class:`MethodReport` per method."""

    reports: list[MethodReport]
    settings: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows, one per method."""
        return [r.row() for r in self.reports]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``settings`` and ``methods`` (nested reports)."""
        return {"settings": dict(self.settings), "methods": [asdict(r) for r in self.reports]}

    def table(self) -> str:
        """A plain-text table of the main columns (``best_auroc``: best OOD score)."""
        head = ["method", "acc", "nll", "ece", "brier", "aurc", "best_auroc", "passes", "ms", "MB"]
        lines = [" ".join(f"{h:>12}" for h in head)]
        for r in self.reports:
            best = max((v["auroc"] for v in r.ood.values()), default=float("nan"))
            mem = "-" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.2f}"
            cells = [r.method, *(f"{v:.4f}" for v in (r.accuracy, r.nll, r.ece, r.brier, r.aurc))]
            cells += [f"{best:.4f}", str(r.forward_passes), f"{r.wall_time_s * 1e3:.1f}", mem]
            lines.append(" ".join(f"{c:>12}" for c in cells))
        return "\n".join(lines)


def _pair(name: str, value: Any) -> tuple[torch.Tensor, torch.Tensor]:
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    if not ok or not all(isinstance(v, torch.Tensor) for v in value):
        raise TypeError(
            f"{WHERE}: expected {name}=(inputs, labels) as two tensors, but got "
            f"{type(value).__name__!r}. Pass a tuple of tensors."
        )
    return value[0], value[1]


def compare_uncertainty(
    model: nn.Module,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    ood: torch.Tensor | None = None,
    shifted: tuple[torch.Tensor, torch.Tensor] | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    train: tuple[torch.Tensor, torch.Tensor] | None = None,
    ensemble: DeepEnsemble | Sequence[nn.Module] | None = None,
    methods: Sequence[str] | None = None,
    samples: int = 30,
    laplace_predictive: str = "probit",
    n_bins: int = 15,
    seed: int = 0,
    batch_size: int | None = None,
    measure_memory: bool = True,
) -> Comparison:
    """Run the rival methods on one protocol and report quality and cost.

    Args:
        model: Trained classifier with dropout, returning logits; used by
            softmax (dropout off), MC dropout and Laplace.
        test: In-distribution test ``(inputs, labels)``.
        ood: OOD inputs ``(M, ...)`` (labels not needed).
        shifted: Shifted test ``(inputs, labels)``.
        val: Validation ``(inputs, labels)`` for temperature scaling.
        train: Training ``(inputs, labels)``, required by Laplace.
        ensemble: A :class:`DeepEnsemble` or list of trained models.
        methods: Subset of ``softmax``, ``mc_dropout``, ``ensemble``,
            ``laplace``; default: every method whose inputs were given.
        samples: MC-dropout samples.
        laplace_predictive: ``"probit"`` or ``"mc"`` (``samples`` draws).
        n_bins: ECE bins (equal width).
        seed: Seed of the MC masks and Laplace draws.
        batch_size: Chunk size for the forward passes.
        measure_memory: Run each prediction a second time to measure memory.

    Shape:
        - test / val / train / shifted inputs: ``(N, ...)``; labels ``(N,)``.
        - ood: ``(M, ...)``.

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: If a requested method lacks what it needs (``ensemble``
            without members, ``laplace`` without ``train``) or names are unknown.
    """
    check_module(WHERE, model)
    x_test, y_test = _pair("test", test)
    samples = check_int(WHERE, samples, "samples")
    if methods is None:
        methods = ["softmax", "mc_dropout"]
        methods += ["ensemble"] if ensemble is not None else []
        methods += ["laplace"] if train is not None else []
    chosen = [check_choice(WHERE, m, "methods[i]", METHODS) for m in methods]
    if "ensemble" in chosen and ensemble is None:
        raise ValueError(
            f"{WHERE}: expected ensemble= with method 'ensemble', but got None. "
            "Pass a DeepEnsemble or a list of trained models."
        )
    if "laplace" in chosen and train is None:
        raise ValueError(
            f"{WHERE}: expected train=(inputs, labels) with method 'laplace', but got None. "
            "Laplace fits its posterior on the training data."
        )
    ens = ensemble if isinstance(ensemble, DeepEnsemble) or ensemble is None else None
    if ensemble is not None and ens is None:
        ens = DeepEnsemble(list(ensemble))  # type: ignore[arg-type]
    val_pair = None if val is None else _pair("val", val)
    shift_pair = None if shifted is None else _pair("shifted", shifted)

    reports = []
    for name in chosen:
        method = _Method(name, model, samples, seed, batch_size, laplace_predictive, ens, train)
        reports.append(
            _evaluate(method, (x_test, y_test), ood, shift_pair, val_pair, n_bins, measure_memory)
        )
    settings = {
        "methods": list(chosen),
        "samples": samples,
        "laplace_predictive": laplace_predictive,
        "n_bins": n_bins,
        "binning": "width",
        "seed": seed,
        "n_test": int(x_test.shape[0]),
        "n_ood": None if ood is None else int(ood.shape[0]),
        "n_shifted": None if shift_pair is None else int(shift_pair[0].shape[0]),
        "ensemble_members": None if ens is None else len(ens),
    }
    return Comparison(reports, settings)


class _Method:
    """One method's predictor with its cost bookkeeping."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        samples: int,
        seed: int,
        batch_size: int | None,
        laplace_predictive: str,
        ens: DeepEnsemble | None,
        train: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> None:
        self.name, self.model, self.samples, self.seed = name, model, samples, seed
        self.batch_size, self.laplace_predictive, self.ens = batch_size, laplace_predictive, ens
        self.params = count_parameters(model)
        self.passes = 1
        self.fit_time = 0.0
        self.la: LastLayerLaplace | None = None
        if name == "mc_dropout":
            from dropkit.uncertainty import mc_predict  # imported before any timing

            self._mc_predict = mc_predict
            self.passes = samples
        elif name == "ensemble" and ens is not None:
            self.params, self.passes = ens.num_parameters, len(ens)
        elif name == "laplace":
            x_tr, y_tr = _pair("train", train)
            self.la = LastLayerLaplace(model).fit(x_tr, y_tr)
            self.fit_time = float(self.la.fit_time_s or 0.0)
            self.params += self.la.posterior_size

    def __call__(self, x: torch.Tensor) -> MCResult:
        if self.la is not None:
            return self.la.predict(
                x,
                predictive=self.laplace_predictive,
                samples=self.samples,
                seed=self.seed,
                batch_size=self.batch_size,
            )
        if self.ens is not None and self.name == "ensemble":
            return self.ens.predict(x, batch_size=self.batch_size)
        if self.name == "mc_dropout":
            return self._mc_predict(
                self.model,
                x,
                samples=self.samples,
                output="logits",
                seed=self.seed,
                batch_size=self.batch_size,
                progress=False,
            )
        return softmax_predict(self.model, x, batch_size=self.batch_size)


def _evaluate(
    predict: _Method,
    test: tuple[torch.Tensor, torch.Tensor],
    ood: torch.Tensor | None,
    shifted: tuple[torch.Tensor, torch.Tensor] | None,
    val: tuple[torch.Tensor, torch.Tensor] | None,
    n_bins: int,
    memory: bool,
) -> MethodReport:
    x_test, y_test = test
    res, wall, peak = measure(lambda: predict(x_test), memory=memory)
    report = MethodReport(
        method=predict.name,
        accuracy=accuracy(res, y_test),
        nll=nll(res, y_test),
        ece=ece(res, y_test, n_bins=n_bins),
        brier=brier(res, y_test),
        aurc=aurc(res, y_test),
        forward_passes=predict.passes,
        wall_time_s=wall,
        peak_memory_mb=None if peak is None else peak / 2**20,
        parameters=predict.params,
        fit_time_s=predict.fit_time,
    )
    if ood is not None:
        out = predict(ood)
        s_in, s_out = ood_scores(res), ood_scores(out)
        flags = torch.cat([torch.zeros(len(y_test)), torch.ones(out.mean.shape[0])]).bool()
        for key in s_in:
            scores = torch.cat([s_in[key], s_out[key]])
            report.ood[key] = {
                "auroc": auroc(scores, flags),
                "aupr_out": aupr_out(scores, flags),
                "fpr95": fpr_at_tpr(scores, flags, 0.95),
            }
    if shifted is not None:
        sres = predict(shifted[0])
        report.shifted = {
            "accuracy": accuracy(sres, shifted[1]),
            "nll": nll(sres, shifted[1]),
            "ece": ece(sres, shifted[1], n_bins=n_bins),
            "brier": brier(sres, shifted[1]),
        }
    if val is not None:
        start = time.perf_counter()
        ts = TemperatureScaling().fit_probs(predict(val[0]), val[1])
        report.fit_time_s += time.perf_counter() - start
        report.temperature = ts.temperature
        cal = ts.transform_probs(res)
        report.calibrated = {
            "nll": nll(cal, y_test),
            "ece": ece(cal, y_test, n_bins=n_bins),
            "brier": brier(cal, y_test),
        }
    return report

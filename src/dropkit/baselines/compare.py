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
* ``fit_time_s``: post-hoc fitting (Laplace Hessian and prior, temperature;
  for ``hmc`` the sampling time).

With ``"hmc"`` among the methods (full-batch HMC, :class:`~dropkit.baselines.HMC`),
every report also holds ``reference``: its distance to the HMC predictive on the
test inputs, ``top1_agreement`` and ``total_variation`` (and the same after
temperature scaling, ``calibrated.*``, when ``val`` is given); see
:mod:`dropkit.metrics.agreement`.

References:
    Gal, Ghahramani (2016). Dropout as a Bayesian approximation. ICML.
    Ovadia et al. (2019). Can you trust your model's uncertainty? Evaluating
    predictive uncertainty under dataset shift. NeurIPS.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypedDict

import torch
from torch import nn

from dropkit._validation import _fail, check_bool, check_choice, check_int, check_module
from dropkit.baselines._common import count_parameters
from dropkit.baselines._cost import measure
from dropkit.baselines.ensemble import DeepEnsemble
from dropkit.baselines.hmc import HMC
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
    top1_agreement,
    total_variation,
)
from dropkit.uncertainty.result import MCResult

METHODS = ("softmax", "mc_dropout", "ensemble", "laplace", "hmc")
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
    reference: dict[str, float] = field(default_factory=dict)

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


class PredictiveScores(TypedDict):
    """What :func:`score_predictive` returns."""

    accuracy: float
    nll: float
    ece: float
    brier: float
    aurc: float


def score_predictive(
    probs: MCResult | torch.Tensor, target: torch.Tensor, *, n_bins: int = 15
) -> PredictiveScores:
    """The quality columns of one predictive: accuracy, NLL, ECE, Brier score and AURC.

    One home for the scores of :func:`compare_uncertainty` and of the demo's
    methods table.

    Args:
        probs: The predictive: an :class:`MCResult`, probabilities or samples.
        target: Integer class labels.
        n_bins: ECE bins (equal width).

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``; target: ``(N,)``.

    Returns:
        ``accuracy``, ``nll``, ``ece``, ``brier``, ``aurc`` (abstaining on
        ``1 - max p`` first).

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> {k: round(v, 4) for k, v in score_predictive(p, torch.tensor([0, 0])).items()}
        {'accuracy': 0.5, 'nll': 0.8574, 'ece': 0.45, 'brier': 0.65, 'aurc': 0.25}
    """
    return PredictiveScores(
        accuracy=accuracy(probs, target),
        nll=nll(probs, target),
        ece=ece(probs, target, n_bins=n_bins),
        brier=brier(probs, target),
        aurc=aurc(probs, target),
    )


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
    methods: str | Sequence[str] | None = None,
    samples: int = 30,
    laplace_predictive: Literal["probit", "mc"] = "probit",
    n_bins: int = 15,
    seed: int = 0,
    batch_size: int | None = None,
    measure_memory: bool = True,
    hmc: HMC | None = None,
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
        methods: One name or a subset of ``softmax``, ``mc_dropout``, ``ensemble``,
            ``laplace``; default: every method whose inputs were given.
        samples: MC-dropout samples.
        laplace_predictive: ``"probit"`` or ``"mc"`` (``samples`` draws).
        n_bins: ECE bins (equal width).
        seed: Seed of the MC masks and Laplace draws.
        batch_size: Chunk size for the forward passes.
        measure_memory: Run each prediction a second time to measure memory.
        hmc: The :class:`HMC` reference for method ``"hmc"`` (fitted on
            ``train`` here unless already fitted); default: ``HMC(model,
            "classification")`` with its default settings.

    Shape:
        - test / val / train / shifted inputs: ``(N, ...)``; labels ``(N,)``.
        - ood: ``(M, ...)``.

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: If a requested method lacks what it needs (``ensemble``
            without members, ``laplace`` or an unfitted ``hmc`` without
            ``train``) or names are unknown.
    """
    check_module(WHERE, model)
    x_test, y_test = _pair("test", test)
    samples = check_int(WHERE, samples, "samples")
    if methods is None:
        methods = ["softmax", "mc_dropout"]
        methods += ["ensemble"] if ensemble is not None else []
        methods += ["laplace"] if train is not None else []
    # a single name is one method, not its characters
    names = [methods] if isinstance(methods, str) else methods
    if not isinstance(names, Iterable):
        raise _fail(
            TypeError,
            WHERE,
            "methods to be a method name or a list of names",
            methods,
            f"Pass e.g. methods=['softmax', 'mc_dropout'] from {', '.join(METHODS)}.",
        )
    chosen = [check_choice(WHERE, m, "methods[i]", METHODS) for m in names]
    check_bool(WHERE, measure_memory, "measure_memory")
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
    if "hmc" in chosen:
        hmc = _fitted_hmc(model, hmc, train)
    ens = ensemble if isinstance(ensemble, DeepEnsemble) or ensemble is None else None
    if ensemble is not None and ens is None:
        ens = DeepEnsemble(list(ensemble))  # type: ignore[arg-type]
    val_pair = None if val is None else _pair("val", val)
    shift_pair = None if shifted is None else _pair("shifted", shifted)

    reports = []
    predicted: dict[str, tuple[Any, Any]] = {}
    for name in chosen:
        method = _Method(name, model, samples, seed, batch_size, laplace_predictive, ens, train)
        method.hmc = hmc if name == "hmc" else None
        if method.hmc is not None:
            method.passes = method.hmc.samples * method.hmc.chains
            method.params = method.hmc.num_parameters
            method.fit_time = float(method.hmc.fit_time_s or 0.0)
        reports.append(
            _evaluate(method, (x_test, y_test), ood, shift_pair, val_pair, n_bins, measure_memory)
        )
        predicted[name] = (method.last, method.last_cal)
    if "hmc" in predicted:
        _add_reference(reports, predicted)
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
        laplace_predictive: Literal["probit", "mc"],
        ens: DeepEnsemble | None,
        train: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> None:
        self.name, self.model, self.samples, self.seed = name, model, samples, seed
        self.batch_size, self.laplace_predictive, self.ens = batch_size, laplace_predictive, ens
        self.params = count_parameters(model)
        self.passes = 1
        self.fit_time = 0.0
        self.la: LastLayerLaplace | None = None
        self.hmc: HMC | None = None
        self.last: MCResult | None = None
        self.last_cal: torch.Tensor | None = None
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
        if self.hmc is not None:
            return self.hmc.predict(x, batch_size=self.batch_size)
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
    predict.last = res
    report = MethodReport(
        method=predict.name,
        **score_predictive(res, y_test, n_bins=n_bins),
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
        q = score_predictive(predict(shifted[0]), shifted[1], n_bins=n_bins)
        report.shifted = {k: q[k] for k in ("accuracy", "nll", "ece", "brier")}
    if val is not None:
        start = time.perf_counter()
        ts = TemperatureScaling().fit_probs(predict(val[0]), val[1])
        report.fit_time_s += time.perf_counter() - start
        report.temperature = ts.temperature
        cal = ts.transform_probs(res)
        predict.last_cal = cal
        report.calibrated = {
            "nll": nll(cal, y_test),
            "ece": ece(cal, y_test, n_bins=n_bins),
            "brier": brier(cal, y_test),
        }
    return report


def _fitted_hmc(
    model: nn.Module, hmc: HMC | None, train: tuple[torch.Tensor, torch.Tensor] | None
) -> HMC:
    """The HMC reference, sampled on ``train`` unless it already holds draws."""
    if hmc is not None and not isinstance(hmc, HMC):
        raise TypeError(
            f"{WHERE}: expected hmc to be a dropkit.baselines.HMC, but got "
            f"{type(hmc).__name__!r}. Pass HMC(model, 'classification', ...)."
        )
    if hmc is not None and hmc.likelihood != "classification":
        raise ValueError(
            f"{WHERE}: expected an HMC with likelihood='classification', but got "
            f"{hmc.likelihood!r}. compare_uncertainty scores classifiers."
        )
    if hmc is not None and hmc.diagnostics is not None:
        return hmc
    if train is None:
        raise ValueError(
            f"{WHERE}: expected train=(inputs, labels) with method 'hmc', but got None. "
            "HMC samples its posterior on the training data (or pass a fitted hmc=)."
        )
    x_tr, y_tr = _pair("train", train)
    return (hmc or HMC(model, "classification")).fit(x_tr, y_tr)


def _add_reference(reports: list[MethodReport], predicted: dict[str, tuple[Any, Any]]) -> None:
    """Distances of every method's test predictive (and calibrated one) to HMC's."""
    ref = predicted["hmc"][0]
    for report in reports:
        res, cal = predicted[report.method]
        report.reference = {
            "top1_agreement": top1_agreement(res, ref),
            "total_variation": total_variation(res, ref),
        }
        if cal is not None:
            report.reference["calibrated.top1_agreement"] = top1_agreement(cal, ref)
            report.reference["calibrated.total_variation"] = total_variation(cal, ref)

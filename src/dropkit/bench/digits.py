"""``dropkit bench digits``: MC dropout vs its rivals on scikit-learn's digits (offline).

Three experiments, each over several seeds (mean +- std across seeds):

(a) **OOD detection.** An MLP (64-H-H-5, ReLU, dropout ``p`` after each hidden
    layer) trained on digits 0-4; OOD = every digit 5-9. AUROC of MC-dropout
    mutual information and predictive entropy, max-softmax (dropout off), a deep
    ensemble (predictive entropy and mutual information) and last-layer Laplace
    (Kronecker GGN, marginal-likelihood prior, probit predictive).
(b) **Calibration.** ECE (15 equal-width bins) and NLL on the 0-4 test split
    for each method, before and after temperature scaling fitted on a
    validation split (on the log of each method's mean predictive).
(c) **Active learning.** All ten digits: 500 test images, the rest is the pool.
    A 20-image class-balanced initial set, 10 images acquired per round, the
    MLP retrained from scratch each round (dropout-off test accuracy), BALD vs
    max entropy vs random, until 90% test accuracy or the label budget.

Data, network, trainer and evaluator are :mod:`dropkit.demo.digits` (the
split arguments: :func:`ood_split`, :func:`al_split`); the network uses
:class:`torch.nn.Dropout`. Splits are stratified random per seed. ``--quick``
shrinks everything to unit-test size (its numbers are not results).

References:
    Gal, Ghahramani (2016). Dropout as a Bayesian approximation. ICML.
    Gal, Islam, Ghahramani (2017). Deep Bayesian active learning with image
    data. ICML.
    Lakshminarayanan et al. (2017). Deep ensembles. NeurIPS.
    Daxberger et al. (2021). Laplace redux. NeurIPS.
    Guo et al. (2017). On calibration of modern neural networks. ICML.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dropkit.active import run_active_learning
from dropkit.baselines import DeepEnsemble
from dropkit.bench._record import progress, write_record
from dropkit.demo.digits import (
    ALL_CLASSES,
    IN_CLASSES,
    DigitsSplit,
    build_mlp,
    evaluate,
    fit,
    split_digits,
)

#: Threads this bench runs with (set before anything is timed); ``dropkit bench``'s
#: machine line reports it.
THREADS = 1

_CALLER = "bench digits"
N_DIGITS = 1797  # images in scikit-learn's digits

FULL: dict[str, Any] = {
    "seeds": 5,
    "hidden": 128,
    "p": 0.5,
    "steps": 300,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "samples": 50,
    "members": 5,
    "al_seeds": 5,
    "al_methods": ["bald", "max_entropy", "random"],
    "al_initial": 20,
    "al_size": 10,
    "al_budget": 400,
    "al_samples": 20,
    "al_target": 0.9,
}
QUICK: dict[str, Any] = {
    **FULL,
    "seeds": 1,
    "hidden": 32,
    "steps": 40,
    "samples": 8,
    "members": 2,
    "al_seeds": 1,
    "al_budget": 30,
    "al_samples": 4,
}


def train_mlp(
    x: torch.Tensor, y: torch.Tensor, n_out: int, seed: int, cfg: dict[str, Any]
) -> nn.Sequential:
    """Train the digits MLP from scratch: full-batch Adam with weight decay; eval mode."""
    model = build_mlp(n_out, hidden=cfg["hidden"], p=cfg["p"], seed=seed, dropout=nn.Dropout)
    fit(model, x, y, epochs=cfg["steps"], lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    return model


def ood_split(seed: int) -> DigitsSplit:
    """Experiments (a) and (b): digits 0-4 stratified 60/20/20, 5-9 OOD, not standardised."""
    return split_digits(
        seed, classes=IN_CLASSES, fractions=(0.6, 0.2, 0.2), stratify=True, caller=_CALLER
    )


def al_split(seed: int) -> DigitsSplit:
    """Experiment (c): all ten digits, 500 stratified test images, the rest the pool (train)."""
    test_frac = 500 / N_DIGITS
    return split_digits(
        seed, classes=ALL_CLASSES, fractions=(1 - test_frac, 0.0, test_frac), stratify=True,
        caller=_CALLER,
    )  # fmt: skip


def run_ood(seed: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Experiments (a) and (b) for one seed; returns per-method numbers."""
    split = ood_split(seed)
    n_out = len(split.classes)
    model = train_mlp(*split.train, n_out, seed, cfg)
    ens = DeepEnsemble.from_train_fn(
        lambda s: train_mlp(*split.train, n_out, s, cfg), cfg["members"], seed=1000 * (seed + 1)
    )
    cmp = evaluate(model, split, ensemble=ens, samples=cfg["samples"], seed=seed)
    out = {}
    for r in cmp.reports:
        out[r.method] = {
            "auroc": {k: v["auroc"] for k, v in r.ood.items()},
            "accuracy": r.accuracy, "ece": r.ece, "nll": r.nll,
            "ece_ts": r.calibrated["ece"], "nll_ts": r.calibrated["nll"],
            "temperature": r.temperature, "forward_passes": r.forward_passes,
            "wall_time_s": r.wall_time_s, "peak_memory_mb": r.peak_memory_mb,
        }  # fmt: skip
    return out


def run_al(seed: int, method: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Experiment (c) for one seed and acquisition function."""
    split = al_split(seed)
    n_out = len(split.classes)
    res = run_active_learning(
        split.x_train, split.y_train, split.test,
        train_fn=lambda a, b, s: train_mlp(a, b, n_out, s, cfg),
        acquire=method, initial=cfg["al_initial"], acquisition_size=cfg["al_size"],
        budget=cfg["al_budget"], samples=cfg["al_samples"], seed=seed,
        target_accuracy=cfg["al_target"],
    )  # fmt: skip
    return {
        "labels_to_target": res.labels_to_reach(cfg["al_target"]),
        "labels": res.labels, "accuracy": res.accuracy, "seconds": res.seconds,
    }  # fmt: skip


def _ms(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    return {"mean": mean, "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _fmt(stat: dict[str, float], digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


OOD_ROWS = [
    ("MC dropout: mutual information", "mc_dropout", "mutual_information"),
    ("MC dropout: predictive entropy", "mc_dropout", "predictive_entropy"),
    ("max softmax (dropout off)", "softmax", "max_softmax"),
    ("deep ensemble: predictive entropy", "ensemble", "predictive_entropy"),
    ("deep ensemble: mutual information", "ensemble", "mutual_information"),
    ("last-layer Laplace: predictive entropy", "laplace", "predictive_entropy"),
]


def summarize(
    ood: list[dict[str, Any]], al: dict[str, list[dict[str, Any]]], cfg: dict[str, Any]
) -> dict[str, Any]:
    """Aggregate per-seed runs into mean ± std tables (returned as a dict)."""
    summary: dict[str, Any] = {"ood_auroc": {}, "calibration": {}, "active_learning": {}}
    for label, method, score in OOD_ROWS if ood else []:
        summary["ood_auroc"][label] = _ms([run[method]["auroc"][score] for run in ood])
    for method in ood[0] if ood else []:
        summary["calibration"][method] = {
            k: _ms([run[method][k] for run in ood])
            for k in ("accuracy", "ece", "ece_ts", "nll", "nll_ts", "temperature")
        }
    budget = cfg["al_budget"]
    for method, runs in al.items():
        reached = [r["labels_to_target"] for r in runs]
        summary["active_learning"][method] = {
            "labels_to_target": _ms([float(v if v is not None else budget) for v in reached]),
            "per_seed": reached,
            "not_reached": sum(v is None for v in reached),
        }
    if "random" in al and "bald" in al:
        r = summary["active_learning"]["random"]["labels_to_target"]["mean"]
        b = summary["active_learning"]["bald"]["labels_to_target"]["mean"]
        summary["active_learning"]["bald_reduction_vs_random"] = 1.0 - b / r
    return summary


def print_tables(summary: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Print the three tables."""
    if summary["ood_auroc"]:
        print(f"(a) OOD AUROC, train 0-4 / OOD 5-9, {cfg['seeds']} seed(s), mean ± std")
        for label, stat in summary["ood_auroc"].items():
            print(f"  {label:<40} {_fmt(stat)}")
        print("\n(b) calibration on the 0-4 test split (ECE: 15 equal-width bins)")
        head = ("method", "acc", "ECE", "ECE+TS", "NLL", "NLL+TS")
        print(f"  {head[0]:<12} " + " ".join(f"{h:>15}" for h in head[1:]))
        for method, s in summary["calibration"].items():
            cells = [_fmt(s[k]) for k in ("accuracy", "ece", "ece_ts", "nll", "nll_ts")]
            print(f"  {method:<12} " + " ".join(f"{c:>15}" for c in cells))
    if not summary["active_learning"]:
        return
    target = cfg["al_target"]
    print(f"\n(c) labels to reach {target:.0%} test accuracy, {cfg['al_seeds']} seed(s)")
    for method, s in summary["active_learning"].items():
        if isinstance(s, dict):
            miss = f" ({s['not_reached']} never reached; counted as budget)" * bool(
                s["not_reached"]
            )
            print(f"  {method:<12} {_fmt(s['labels_to_target'], 1)}  {s['per_seed']}{miss}")
    if "bald_reduction_vs_random" in summary["active_learning"]:
        red = summary["active_learning"]["bald_reduction_vs_random"]
        print(f"  BALD needs {red:.1%} fewer labels than random (goal: >= 25%)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="dropkit bench digits", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny settings (seconds; a smoke test)"
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds for (a), (b) and (c)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: ood,al")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(
                f"bench digits: expected --seeds >= 1, but got {args.seeds}. Pass e.g. --seeds 5."
            )
        cfg["seeds"] = cfg["al_seeds"] = args.seeds
    skip = {s for s in args.skip.split(",") if s}
    if skip - {"ood", "al"}:
        raise ValueError(
            f"bench digits: expected --skip among ['al', 'ood'], but got {sorted(skip)}. "
            "Pass e.g. --skip al."
        )
    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    ood = [
        run_ood(s, cfg) for s in progress(range(0 if "ood" in skip else cfg["seeds"]), "ood seeds")
    ]
    al: dict[str, list[dict[str, Any]]] = {}
    al_runs = [
        (m, s) for m in ([] if "al" in skip else cfg["al_methods"]) for s in range(cfg["al_seeds"])
    ]
    for method, s in progress(al_runs, "active learning runs"):
        al.setdefault(method, []).append(run_al(s, method, cfg))
    print()
    summary = summarize(ood, al, cfg)
    print_tables(summary, cfg)
    seconds = time.perf_counter() - start
    print(f"\ntotal {seconds:.1f} s")
    if args.out is not None:
        payload = {
            "bench": "digits", "quick": args.quick, "config": cfg, "seconds": seconds,
            "torch": torch.__version__, "summary": summary, "ood_runs": ood, "al_runs": al,
        }  # fmt: skip
        write_record(args.out, payload)
    return 0

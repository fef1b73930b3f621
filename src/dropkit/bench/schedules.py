"""``dropkit bench schedules``: dropout schedules against fixed and learned rates.

On scikit-learn's digits (8x8 images, 10 classes), the same MLP
(``64 -> H -> H -> 10``, ReLU, dropout before the second and third linear
layers) is trained from the same initial weights on the same split with:

* ``none``: no dropout;
* ``fixed``: a constant rate ``--p``;
* ``cosine``: cosine decay from 0.5 to 0 over training (high early, then off);
* ``early``: early dropout, ``--p`` for the first 20% of steps, then 0;
* ``concrete``: :class:`dropkit.nn.ConcreteDropout` wrapping both layers, the
  rate learned with the concrete relaxation (initial p 0.1).

Schedules run through :class:`dropkit.training.DropoutScheduler` with
:func:`dropkit.training.steps`. The final validation NLL (mean cross-entropy)
and accuracy are reported as mean ± std over seeds (each seed draws its own
split and initial weights, shared by all methods).

References:
    Liu et al., "Dropout Reduces Underfitting", ICML 2023.
    Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017.
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 2014.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dropkit import schedules as S
from dropkit._optional import require
from dropkit.training import DropoutScheduler, steps

METHODS = ("none", "fixed", "cosine", "early", "concrete")
_WHERE = "bench schedules"


def load_digits(seed: int, train_size: int) -> tuple[torch.Tensor, ...]:
    """Return ``(x_train, y_train, x_val, y_val)`` from a seeded stratified split."""
    datasets = require("sklearn.datasets", "metrics", _WHERE)
    selection = require("sklearn.model_selection", "metrics", _WHERE)
    x, y = datasets.load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = selection.train_test_split(
        x / 16.0, y, train_size=train_size, stratify=y, random_state=seed
    )
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return as_x(x_tr), as_y(y_tr), as_x(x_va), as_y(y_va)


def build_mlp(method: str, hidden: int, n_train: int) -> nn.Sequential:
    """The benchmark MLP; dropout sites (or ConcreteDropout) before layers 2 and 3."""
    fc1, fc2, fc3 = nn.Linear(64, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 10)
    if method == "concrete":
        from dropkit.nn.concrete import ConcreteDropout

        # Gal et al.: weight_regularizer = l^2 / N, dropout_regularizer = 2 / N.
        wr, dr = 1e-4 / n_train, 2.0 / n_train
        return nn.Sequential(
            fc1,
            nn.ReLU(),
            ConcreteDropout(fc2, p=0.1, weight_regularizer=wr, dropout_regularizer=dr),
            nn.ReLU(),
            ConcreteDropout(fc3, p=0.1, weight_regularizer=wr, dropout_regularizer=dr),
        )
    return nn.Sequential(fc1, nn.ReLU(), nn.Dropout(0.0), fc2, nn.ReLU(), nn.Dropout(0.0), fc3)


def schedule_for(method: str, p: float, total: int) -> Callable[[int], float] | None:
    """The dropout schedule of each method (None: rates stay as built)."""
    if method == "fixed":
        return S.constant(p)
    if method == "cosine":
        return S.cosine(0.5, 0.0, steps=total)
    if method == "early":
        return S.early(p, until=max(1, total // 5))
    return None


def _regularization(model: nn.Module) -> torch.Tensor:
    from dropkit.nn.concrete import ConcreteDropout

    terms = [m.regularization() for m in model.modules() if isinstance(m, ConcreteDropout)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def run_one(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one method on one seed; return final validation NLL, accuracy and rates."""
    x_tr, y_tr, x_va, y_va = load_digits(seed, args.train_size)
    torch.manual_seed(seed)
    model = build_mlp(method, args.hidden, len(x_tr))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    per_epoch = math.ceil(len(x_tr) / args.batch_size)
    total = args.epochs * per_epoch
    schedule = schedule_for(method, args.p, total)
    scheduler = DropoutScheduler(model, schedule) if schedule is not None else None
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    step_numbers = range(total)
    loop = steps(scheduler, step_numbers) if scheduler is not None else iter(step_numbers)
    order = torch.randperm(len(x_tr), generator=gen)
    model.train()
    for step in loop:
        i = step % per_epoch
        if i == 0:
            order = torch.randperm(len(x_tr), generator=gen)
        idx = order[i * args.batch_size : (i + 1) * args.batch_size]
        loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx]) + _regularization(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        logits = model(x_va)
    from dropkit.sites import find_dropout

    return {
        "nll": float(F.cross_entropy(logits, y_va)),
        "accuracy": float((logits.argmax(-1) == y_va).float().mean()),
        "final_p": [round(s.p, 4) for s in find_dropout(model)],
        "seconds": seconds,
    }


def _summary(values: list[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every method on every seed and summarise."""
    results: dict[str, Any] = {}
    for method in args.methods:
        runs = [run_one(method, seed, args) for seed in range(args.seeds)]
        results[method] = {
            "nll": _summary([r["nll"] for r in runs]),
            "accuracy": _summary([r["accuracy"] for r in runs]),
            "final_p": runs[0]["final_p"],
            "seconds": sum(r["seconds"] for r in runs),
            "runs": runs,
        }
    return results


def _print(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"digits: train {args.train_size}, MLP hidden {args.hidden}, {args.epochs} epochs, "
        f"{args.seeds} seeds, fixed/early p={args.p}"
    )
    head = (
        f"{'method':<10} {'val NLL':>17} {'val accuracy':>17} "
        f"{'final p (seed 0)':>20} {'time s':>7}"
    )
    print(head)
    print("-" * len(head))
    for method, r in results.items():
        nll, acc = r["nll"], r["accuracy"]
        final = ", ".join(f"{p:.2f}" for p in r["final_p"]) or "-"
        print(
            f"{method:<10} {nll['mean']:>8.4f} ± {nll['std']:.4f} "
            f"{acc['mean']:>8.4f} ± {acc['std']:.4f} {final:>20} {r['seconds']:>7.1f}"
        )


def _methods(spec: str) -> list[str]:
    names = [s for s in spec.split(",") if s]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise ValueError(
            f"{_WHERE}: expected methods among {list(METHODS)}, but got {spec!r}. "
            f"Pick from {', '.join(METHODS)}."
        )
    return names


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, but got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="dropkit bench schedules", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="2 seeds, 15 epochs (CI smoke run)")
    parser.add_argument("--seeds", type=_positive_int, default=None, help="seeds (default 5)")
    parser.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default 60)")
    parser.add_argument("--train-size", type=_positive_int, default=500)
    parser.add_argument("--hidden", type=_positive_int, default=256)
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--p", type=float, default=0.3, help="rate of 'fixed' and 'early'")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    args.methods = _methods(args.methods)
    from dropkit._validation import check_p

    check_p(_WHERE, args.p)
    if not 1 <= args.train_size <= 1500:
        raise ValueError(
            f"{_WHERE}: expected --train-size in [1, 1500], but got {args.train_size}. "
            "Digits has 1797 images; keep some for validation."
        )
    args.seeds = args.seeds or (2 if args.quick else 5)
    args.epochs = args.epochs or (15 if args.quick else 60)
    results = run(args)
    _print(results, args)
    if args.out is not None:
        config = {k: v for k, v in vars(args).items() if k != "out"}
        payload = {"bench": "schedules", "config": config, "results": results}
        from dropkit.bench._record import write_record

        write_record(args.out, payload)
        print(f"wrote {args.out}")
    return 0

"""``dropkit bench sweep``: batched grid training against the one-by-one loop.

The workload is the UCI grid search of Gal & Ghahramani (2016): the 12
``(p, tau)`` configurations x 20 splits of one dataset, the 50-unit network,
batch 128. Side by side in one run, repeated and interleaved so load spikes
hit both: :class:`~dropkit.bench.uci.batched.BatchedMLP` training all 240 models
at once (fused numba kernels, and the plain-torch backend), and
:func:`~dropkit.bench.uci.reference.train_one` (``torch.nn`` + autograd +
``torch.optim.Adam``) training a sample of the same models one after another.
Reported: model-steps per second (models x optimiser steps / seconds), the
speed-up of each batched backend (target >= 10x, goal 20x), and the largest
weight difference between a batched model and its one-by-one twin (same
stream, so float rounding only).

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from dropkit.bench.uci.batched import BatchedMLP
from dropkit.bench.uci.data import fit_validation, load_uci, regularization, standardize
from dropkit.bench.uci.reference import train_one


def _grid(data_dir: Path, name: str, splits: int) -> dict[str, Any]:
    data = load_uci(data_dir, name)
    xs, ys, p, reg, seeds = [], [], [], [], []
    for k in range(min(splits, data.n_splits)):
        fit, _ = fit_validation(data.train[k])
        mx, sx = standardize(data.x[fit])
        my, sy = standardize(data.y[fit][:, None])
        x = torch.from_numpy((data.x[fit] - mx) / sx).float()
        y = torch.from_numpy((data.y[fit] - my[0]) / sy[0]).float()
        for c, (rate, tau) in enumerate(data.grid):
            xs.append(x)
            ys.append(y)
            p.append(rate)
            reg.append(regularization(rate, tau, len(fit)))
            seeds.append((0, k, c, 0))
    return {"xs": xs, "ys": ys, "p": p, "reg": reg, "seeds": seeds, "n_hidden": data.n_hidden}


def _steps_per_epoch(n: int, batch: int = 128) -> int:
    return -(-n // batch)


def run(
    data_dir: Path, name: str, *, epochs: int, sequential: int, repeats: int, splits: int = 20
) -> dict[str, Any]:
    """Time both trainers; return the JSON-ready measurements."""
    g = _grid(data_dir, name, splits)
    m = len(g["xs"])
    steps = [_steps_per_epoch(len(x)) * epochs for x in g["xs"]]
    picks = list(range(0, m, max(1, m // sequential)))[:sequential]

    def batched(backend: str) -> tuple[float, BatchedMLP]:
        net = BatchedMLP(
            g["xs"],
            g["ys"],
            p=g["p"],
            reg=g["reg"],
            seeds=g["seeds"],
            n_hidden=g["n_hidden"],
            backend=backend,
        )
        start = time.perf_counter()
        net.train(epochs)
        return sum(steps) / (time.perf_counter() - start), net

    def one_by_one() -> tuple[float, list[Any]]:
        start, models = time.perf_counter(), []
        for i in picks:
            model, _ = train_one(
                g["xs"][i],
                g["ys"][i],
                p=g["p"][i],
                reg=g["reg"][i],
                seed=g["seeds"][i],
                epochs=epochs,
                n_hidden=g["n_hidden"],
            )
            models.append(model)
        return sum(steps[i] for i in picks) / (time.perf_counter() - start), models

    batched("numba")  # compile the kernels before timing
    train_one(
        g["xs"][0],
        g["ys"][0],
        p=g["p"][0],
        reg=g["reg"][0],
        seed=0,
        epochs=1,
        n_hidden=g["n_hidden"],
    )  # untimed warm-up
    rates: dict[str, list[float]] = {"numba": [], "torch": [], "sequential": []}
    for _ in range(repeats):
        r_numba, net = batched("numba")
        r_torch, _ = batched("torch")
        r_seq, models = one_by_one()
        rates["numba"].append(r_numba)
        rates["torch"].append(r_torch)
        rates["sequential"].append(r_seq)
    w1, b1, w2, b2 = net.weights
    with torch.no_grad():
        diff = max(
            max(
                float((mod.hidden.weight.T - w1[i]).abs().max()),
                float((mod.out.weight.T - w2[i]).abs().max()),
                float((mod.hidden.bias - b1[i, 0]).abs().max()),
            )
            for i, mod in zip(picks, models)
        )
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "dataset": name,
        "models": m,
        "epochs": epochs,
        "sequential_models_timed": len(picks),
        "model_steps_per_s": med,
        "speedup_numba": med["numba"] / med["sequential"],
        "speedup_torch": med["torch"] / med["sequential"],
        "ratios_per_repeat": [a / c for a, c in zip(rates["numba"], rates["sequential"])],
        "max_weight_diff_vs_sequential": diff,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    from dropkit.bench.uci import _default_data_dir

    parser = argparse.ArgumentParser(prog="dropkit bench sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="UCI folder")
    parser.add_argument("--dataset", default="bostonHousing")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per repeat")
    parser.add_argument(
        "--sequential", type=int, default=None, help="models trained one by one per repeat"
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--splits", type=int, default=None, help="splits in the grid (20)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--quick", action="store_true", help="4 splits, 2 epochs, 3 models one by one, 1 repeat"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or _default_data_dir()
    if data_dir is None:
        raise ValueError(
            "bench sweep: expected --data-dir or $DROPKIT_UCI_DIR, but got neither. "
            "Pass the folder holding one sub-folder per UCI dataset."
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    epochs = args.epochs or (2 if args.quick else 20)
    sequential = args.sequential or (3 if args.quick else 12)
    repeats = args.repeats or (1 if args.quick else 3)
    splits = args.splits or (4 if args.quick else 20)
    result = run(
        data_dir, args.dataset, epochs=epochs, sequential=sequential, repeats=repeats, splits=splits
    )
    rates = result["model_steps_per_s"]
    print(
        f"{result['dataset']}: {result['models']} models (12 configs x splits), "
        f"{epochs} epochs, threads {torch.get_num_threads()}"
    )
    print(f"{'trainer':<28} {'model-steps/s':>14} {'speed-up':>9}")
    print(f"{'one by one (nn + Adam)':<28} {rates['sequential']:>14.0f} {1.0:>8.1f}x")
    print(f"{'batched, torch ops':<28} {rates['torch']:>14.0f} {result['speedup_torch']:>8.1f}x")
    print(
        f"{'batched, fused (numba)':<28} {rates['numba']:>14.0f} {result['speedup_numba']:>8.1f}x"
    )
    print(
        f"max |weight difference| batched vs one by one: "
        f"{result['max_weight_diff_vs_sequential']:.2e}"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "bench": "sweep",
            "quick": args.quick,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            **result,
        }
        from dropkit.bench._record import write_record

        write_record(args.out, payload)
    return 0

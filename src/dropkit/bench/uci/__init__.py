"""``dropkit bench uci``: the UCI MC-dropout regression table, reproduced.

Runs the 2018 grid-search protocol of Gal & Ghahramani's
``DropoutUncertaintyExps`` (grid over ``p x tau`` on an 80/20 split of the
training rows, refit, ``T`` MC passes, RMSE and test log-likelihood in the
target's units, mean +- standard error over splits) with the batched trainer,
and prints dropkit's numbers next to the published ones. Resumable: results are
checkpointed per split (and training state every few minutes) under ``--out``;
rerunning the same command picks up where it stopped.

``--engine ray`` runs every (dataset, split) unit as a Ray task (a local Ray on
this machine, or the cluster at ``--address``): each unit is the protocol on
that split alone (its own grid, refit and test, in ``DATASET/units/split_K``),
and its record lands in the same ``DATASET/split_K.json`` as with ``--engine
local``, so either engine resumes the other's folder. A split's models draw
from streams keyed by ``(seed, split, config, phase)``, so the numbers are
identical to ``--engine local`` for the same seed.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
    Hernández-Lobato and Adams, "Probabilistic Backpropagation", ICML 2015.
    Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable Predictive
    Uncertainty Estimation using Deep Ensembles", NeurIPS 2017.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dropkit._io import read_json, write_json
from dropkit.bench._record import write_record
from dropkit.bench.uci.data import DATASETS, UCIData, load_uci
from dropkit.bench.uci.protocol import ProtocolSettings, run_uci, summarize

# Published results, RMSE / test log-likelihood as (mean, standard error).
# Sources: "grid" is the 2018 grid-search run of yaringal/DropoutUncertaintyExps,
# unrounded mean and std error (std ddof 0 / sqrt(n_splits)) copied from its
# reference logs (shared/data/uci/*/reference-2018/log_100_xepochs_1_hidden_layers.txt);
# "gal2016" is Gal & Ghahramani 2016, arXiv v6, Table 1; "ensembles" is
# Lakshminarayanan et al. 2017, Table 1 (LL = -NLL; its +- used another protocol
# and is omitted). The rounded table is in shared/data/uci/README.md.
PUBLISHED: dict[str, dict[str, Any]] = {
    "bostonHousing": {
        "grid": ((2.903623, 0.176840), (-2.401936, 0.041702)),
        "gal2016": ((2.97, 0.19), (-2.46, 0.06)),
        "ensembles": (3.28, -2.41),
    },
    "concrete": {
        "grid": ((4.826460, 0.160534), (-2.936656, 0.024828)),
        "gal2016": ((5.23, 0.12), (-3.04, 0.02)),
        "ensembles": (6.03, -3.06),
    },
    "energy": {
        "grid": ((0.538867, 0.013524), (-1.211517, 0.005319)),
        "gal2016": ((1.66, 0.04), (-1.99, 0.02)),
        "ensembles": (2.09, -1.38),
    },
    "kin8nm": {
        "grid": ((0.078899, 0.000595), (1.136426, 0.006625)),
        "gal2016": ((0.10, 0.00), (0.95, 0.01)),
        "ensembles": (0.09, 1.20),
    },
    "naval-propulsion-plant": {
        "grid": ((0.000743, 0.000046), (4.449543, 0.002160)),
        "gal2016": ((0.01, 0.00), (3.80, 0.01)),
        "ensembles": (0.00, 5.63),
    },
    "power-plant": {
        "grid": ((4.014226, 0.036771), (-2.807789, 0.008626)),
        "gal2016": ((4.02, 0.04), (-2.80, 0.01)),
        "ensembles": (4.11, -2.79),
    },
    "protein-tertiary-structure": {
        "grid": ((4.274228, 0.020866), (-2.871297, 0.001492)),
        "gal2016": ((4.36, 0.01), (-2.89, 0.00)),
        "ensembles": (4.71, -2.83),
    },
    "wine-quality-red": {
        "grid": ((0.621809, 0.007974), (-0.928090, 0.012738)),
        "gal2016": ((0.62, 0.01), (-0.93, 0.01)),
        "ensembles": (0.64, -0.94),
    },
    "yacht": {
        "grid": ((0.666275, 0.048602), (-1.250148, 0.015297)),
        "gal2016": ((1.11, 0.09), (-1.55, 0.03)),
        "ensembles": (1.58, -1.18),
    },
}
SMALL = ("bostonHousing", "concrete", "energy", "wine-quality-red", "yacht")
_WHERE = "bench uci"


def _default_data_dir() -> Path | None:
    """``$DROPKIT_UCI_DIR``, else the nearest ``shared/data/uci`` above this file.

    The search upwards finds the ``shared/`` folder beside a source checkout
    (``../shared/data/uci``) or inside it, wherever this package sits in it.
    """
    env = os.environ.get("DROPKIT_UCI_DIR")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        guess = parent / "shared" / "data" / "uci"
        if guess.is_dir():
            return guess
    return None


def _datasets(spec: str) -> list[str]:
    if spec in ("all", "small"):
        return list(DATASETS if spec == "all" else SMALL)
    names = [s for s in spec.split(",") if s]
    unknown = [n for n in names if n not in DATASETS]
    if unknown or not names:
        raise ValueError(
            f"{_WHERE}: expected datasets among {list(DATASETS)}, 'small' or 'all', but got "
            f"{spec!r}. Pick from {', '.join(DATASETS)}."
        )
    return names


def _within(ours: dict[str, float], published: tuple[float, float], higher: bool) -> bool:
    """Within two published standard errors, or better."""
    mean, se = published
    margin = 2 * se + 1e-12
    return ours["mean"] >= mean - margin if higher else ours["mean"] <= mean + margin


def compare(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Add the published numbers and the two-SE verdicts to a dataset summary."""
    pub = PUBLISHED.get(name)
    if pub is None:
        return summary
    rmse_pub, ll_pub = pub["grid"]
    return {
        **summary,
        "published": pub,
        "rmse_within_2se": _within(summary["rmse"], rmse_pub, higher=False),
        "ll_within_2se": _within(summary["ll"], ll_pub, higher=True),
    }


def _fmt(mean: float, se: float) -> str:
    size = abs(mean)
    digits = 2 if size >= 1 else 3 if size >= 0.1 else 4 if size >= 0.01 else 6
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def _print(results: dict[str, dict[str, Any]]) -> None:
    head = (
        f"{'dataset':<28} {'splits':>6} {'dropkit RMSE':>16} {'grid 2018':>16} "
        f"{'2016':>14} {'DE':>6} | {'dropkit LL':>16} {'grid 2018':>16} {'2016':>14} "
        f"{'DE':>6} {'time s':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        pub = PUBLISHED.get(name, {})
        grid, gal, de = pub.get("grid"), pub.get("gal2016"), pub.get("ensembles")
        ok = (
            "" if r.get("rmse_within_2se", True) else "*",
            "" if r.get("ll_within_2se", True) else "*",
        )
        print(
            f"{name:<28} {r['splits']:>6} {_fmt(**r['rmse']) + ok[0]:>16} "
            f"{_fmt(*grid[0]) if grid else '':>16} {_fmt(*gal[0]) if gal else '':>14} "
            f"{de[0] if de else '':>6} | {_fmt(**r['ll']) + ok[1]:>16} "
            f"{_fmt(*grid[1]) if grid else '':>16} {_fmt(*gal[1]) if gal else '':>14} "
            f"{de[1] if de else '':>6} {r['seconds']:>8.0f}"
        )
    print("* = outside two published standard errors of the grid-search column")


def _unit(
    data: UCIData, split: int, out: str, settings: ProtocolSettings, verbose: bool = False
) -> dict[str, Any]:
    """One (dataset, split) unit on a Ray worker: the protocol on that split alone.

    Ray forwards a worker's stderr to the driver, so its progress lines are
    written only when the driver shows progress (``verbose``).
    """
    torch.set_num_threads(1)

    def log(line: str) -> None:
        if verbose:
            print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    folder = Path(out) / data.name / "units" / f"split_{split}"
    return run_uci(data, [split], folder, settings, log=log)[0]


def run_units_on_ray(
    datasets: list[UCIData],
    plan: dict[str, list[int]],
    out: Path,
    settings: ProtocolSettings,
    address: str | None,
    workers: int | None,
    log: Callable[[str], None],
    verbose: bool = False,
) -> None:
    """Run the unfinished (dataset, split) units of ``plan`` as Ray tasks.

    Finished units (``out/DATASET/split_K.json`` with this run's settings) are
    skipped; each finished task's record is written there atomically as it
    arrives, so an interrupted run resumes with either engine. Tasks are
    retried by Ray if their worker dies.
    """
    from dropkit.integrations.ray import session

    todo: list[tuple[UCIData, int]] = []
    for data in datasets:
        fp = settings.fingerprint(data)
        for k in plan[data.name]:
            path = out / data.name / f"split_{k}.json"
            if not (path.exists() and read_json(path).get("settings") == fp):
                todo.append((data, k))
    if not todo:
        return
    with session(address, workers=workers, caller=_WHERE) as ray:
        task = ray.remote(num_cpus=1, max_retries=3)(_unit)
        refs = {}
        shared: dict[str, Any] = {}
        for data, k in todo:
            if data.name not in shared:
                shared[data.name] = ray.put(data)
            refs[task.remote(shared[data.name], k, str(out), settings, verbose)] = (data.name, k)
        log(f"ray: {len(refs)} units queued ({', '.join(sorted({n for n, _ in refs.values()}))})")
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            name, k = refs[ready[0]]
            record = ray.get(ready[0])
            write_json(out / name / f"split_{k}.json", record)
            log(f"[{name}] split {k} done on ray: RMSE {record['rmse']:.4g}, LL {record['ll']:.4g}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(prog="dropkit bench uci", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="UCI folder (one sub-folder per dataset); default $DROPKIT_UCI_DIR",
    )
    parser.add_argument(
        "--datasets", default="small", help="comma-separated names, 'small' (5 small sets) or 'all'"
    )
    parser.add_argument("--splits", type=int, default=None, help="run the first N splits")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (override)")
    parser.add_argument(
        "--epochs-scale",
        type=float,
        default=1.0,
        help="multiplier on the protocol's 100 x n_epochs",
    )
    parser.add_argument("--samples", type=int, default=10_000, help="MC passes T")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print progress lines to stderr even when it is not a terminal (logs of long runs)",
    )
    parser.add_argument("--backend", default="auto", choices=("auto", "numba", "torch"))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder: checkpoints, per-split JSON, uci.json (default out/uci, "
        "out/uci-quick with --quick)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI mode: yacht, 2 splits, 40 epochs, 100 samples"
    )
    parser.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local: this process; ray: one Ray task per (dataset, split) unit",
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster HOST:PORT (default: a local Ray)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="CPUs of the local Ray (default 2)"
    )
    args = parser.parse_args(argv)
    if args.engine != "ray" and (args.address is not None or args.workers is not None):
        raise ValueError(
            f"{_WHERE}: expected --address / --workers only with --engine ray, but got "
            f"--engine {args.engine}. Add --engine ray."
        )
    if args.quick:
        args.datasets, args.splits, args.epochs = "yacht", args.splits or 2, args.epochs or 40
        args.samples = min(args.samples, 100)
    args.out = args.out or Path("out/uci-quick" if args.quick else "out/uci")
    data_dir = args.data_dir or _default_data_dir()
    if data_dir is None:
        raise ValueError(
            f"{_WHERE}: expected --data-dir or $DROPKIT_UCI_DIR, but got neither. "
            "Pass the folder holding one sub-folder per UCI dataset."
        )
    if args.splits is not None and args.splits < 1:
        raise ValueError(
            f"{_WHERE}: expected --splits >= 1, but got {args.splits!r}. Pass 1 or more."
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # load (and check) every dataset before training anything
    datasets: list[UCIData] = [load_uci(data_dir, name) for name in _datasets(args.datasets)]
    settings = ProtocolSettings(
        epochs=args.epochs,
        epochs_scale=args.epochs_scale,
        samples=args.samples,
        seed=args.seed,
        backend=args.backend,
    )
    results: dict[str, dict[str, Any]] = {}

    # progress lines on a terminal only (or asked for with --verbose, for logs of long runs)
    verbose = args.verbose or sys.stderr.isatty()

    def log(line: str) -> None:
        if verbose:
            print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    plan = {d.name: list(range(min(args.splits or d.n_splits, d.n_splits))) for d in datasets}
    if args.engine == "ray":
        run_units_on_ray(
            datasets, plan, args.out, settings, args.address, args.workers, log, verbose
        )
    for data in datasets:
        splits = plan[data.name]
        records = run_uci(data, splits, args.out, settings, log=log)
        summary = compare(data.name, summarize(records))
        summary["epochs"] = settings.epochs_for(data)
        summary["samples"] = settings.samples
        summary["complete"] = len(splits) == data.n_splits
        summary["full_protocol"] = (
            summary["complete"]
            and summary["epochs"] == data.n_epochs * 100
            and settings.samples == 10_000
        )
        summary["per_split"] = records
        results[data.name] = summary
        log(f"[{data.name}] done: RMSE {_fmt(**summary['rmse'])}, LL {_fmt(**summary['ll'])}")
    _print(results)
    # uci.json accumulates: datasets of earlier runs into the same folder are kept
    summary_path = args.out / "uci.json"
    previous = read_json(summary_path).get("datasets", {}) if summary_path.exists() else {}
    write_record(
        summary_path,
        {
            "bench": "uci",
            "quick": args.quick,
            "data_dir": str(data_dir),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "datasets": {**previous, **results},
        },
    )
    return 0

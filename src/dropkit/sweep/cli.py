"""``dropkit sweep``: run, join or resume an Optuna dropout study from the shell.

What it trains (``--task``):

* ``digits`` (default): a dropout MLP on scikit-learn's bundled digits.
* ``uci:NAME``: one split of a UCI regression set from ``--data-dir``.
* ``package.module:factory``: your own task; ``factory(options)`` returns
  ``train(params, report) -> Predictions`` (see :mod:`dropkit.sweep.tasks`);
  ``--task-option KEY=VALUE`` pairs arrive in ``options``.

Many machines: start the same command with one PostgreSQL ``--storage`` URL
and ``--study`` name on each; they share the study and stop when it holds
``--trials`` finished trials. Rerun after an interruption to resume; trials
of a killed worker are marked FAIL after ``--grace`` seconds without heartbeat.

Example:
    dropkit sweep --study digits --trials 30 --objective nll
    dropkit sweep --storage postgresql://me:pw@db/sweeps --study digits --trials 200
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

_ERRORS = (ValueError, TypeError, RuntimeError, FileNotFoundError, ImportError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropkit sweep", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--task", default="digits", help="digits, uci:NAME or package.module:factory")
    add("--data-dir", default=None, help="UCI folder for --task uci:NAME")
    add(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option (epochs, samples, seed, split, tau, or any for a factory)",
    )
    add("--storage", default="sqlite:///study.db", help="Optuna storage URL")
    add("--study", default="dropkit", help="study name shared by cooperating workers")
    add("--trials", type=int, default=20, help="finished trials the study should hold")
    add(
        "--objective",
        default="nll",
        help="nll, accuracy, ece, rmse or package.module:function(outputs, targets)",
    )
    add("--direction", default=None, choices=("minimize", "maximize"))
    add("--epochs", type=int, default=None, help="epochs per trial (task option)")
    add("--samples", type=int, default=None, help="MC passes for validation (task option)")
    add("--p-range", default="0,0.5", help="LOW,HIGH of the searched drop rates")
    add("--seed", type=int, default=None, help="sampler seed")
    add("--timeout", type=float, default=None, help="stop this worker after SECONDS")
    add("--heartbeat", type=int, default=10, help="seconds between trial heartbeats")
    add("--grace", type=int, default=None, help="seconds without heartbeat before FAIL")
    add("--out", type=Path, default=None, help="write a JSON summary here")
    add("--quiet", action="store_true", help="no per-trial lines")
    return parser


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(
                f"dropkit sweep: expected --task-option KEY=VALUE, but got {pair!r}. "
                "Write e.g. --task-option epochs=5."
            )
        options[key] = value
    return options


def _objective(spec: str) -> Any:
    from dropkit.sweep.objectives import OBJECTIVES

    if spec in OBJECTIVES or ":" not in spec:
        return spec
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"dropkit sweep: expected an importable objective, but got {spec!r} ({exc}). "
            "Check the module path and function name."
        ) from None


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"dropkit sweep: expected --p-range LOW,HIGH, but got {text!r}. Write e.g. 0,0.5."
        ) from None
    return low, high


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Check every argument, then run the study; return a JSON-ready summary."""
    from dropkit.sweep.objectives import resolve
    from dropkit.sweep.space import SearchSpace, space_for
    from dropkit.sweep.study import open_storage, run_study
    from dropkit.sweep.tasks import load_task

    objective = _objective(args.objective)
    resolve(objective, args.direction)  # unknown objective: fail before anything exists
    space = SearchSpace(p=_range(args.p_range))
    options = _options(args.task_option)
    for key in ("epochs", "samples"):
        if getattr(args, key) is not None:
            options[key] = str(getattr(args, key))
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    train = load_task(args.task, options, data_dir=args.data_dir)
    storage = open_storage(
        args.storage, heartbeat_interval=args.heartbeat, grace_period=args.grace, log=log
    )
    space = space_for(train, p=space.p)
    study = run_study(
        train,
        objective=objective,
        direction=args.direction,
        storage=storage,
        study_name=args.study,
        n_trials=args.trials,
        space=space,
        seed=args.seed,
        timeout=args.timeout,
        log=log,
    )
    states: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    return {
        "study": args.study,
        "objective": args.objective,
        "direction": study.direction.name.lower(),
        "trials": states,
        "best": None
        if best is None
        else {"number": best.number, "value": best.value, "params": best.params},
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dropkit sweep``; returns the exit code (2 on bad input)."""
    args = _parser().parse_args(argv)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        summary = run(args)
    except _ERRORS as exc:
        print(f"dropkit sweep: error: {exc}", file=sys.stderr)
        return 2
    best = summary["best"]
    print(f"study {summary['study']!r}: {summary['trials']}")
    if best is not None:
        print(
            f"best trial {best['number']}: {summary['objective']}={best['value']:.6g} "
            f"{best['params']}"
        )
    if args.out is not None:
        from dropkit.sweep._io import write_json

        write_json(args.out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

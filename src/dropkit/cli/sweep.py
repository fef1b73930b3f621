"""``dropkit sweep``: run, join or resume an Optuna dropout study from the shell.

What it trains (``--task``):

* ``digits`` (default): a dropout MLP on scikit-learn's bundled digits.
* ``uci:NAME``: one split of a UCI regression set from ``--data-dir``.
* ``package.module:factory``: your own task; ``factory(options)`` returns
  ``train(params, report) -> Predictions`` (see :mod:`dropkit.sweep.tasks`);
  ``--task-option KEY=VALUE`` pairs arrive in ``options``.

Many machines: start the same command with one PostgreSQL ``--storage`` URL
and ``--study`` name on each; they share the study, and ``--trials N`` is the
number of finished trials the whole study ends with, however many workers
run. Rerun after an interruption to resume; trials of a killed worker are
marked FAIL (at once on the same machine, after ``--grace`` seconds without
heartbeat elsewhere). Every number is checked before the storage is touched.

No ``--sites`` here, unlike ``audit``, ``predict`` and ``score``: a sweep's
task builds its own model for every trial and the search space holds one rate
per site kind (:mod:`dropkit.sweep.space`; digits: the MLP's element dropout,
``uci:NAME``: one rate), never a model whose sites one could select. To
search the rates of chosen sites of your own model, write a factory task
that calls ``dropkit.set_dropout(model, p, sites=...)``.

Example:
    dropkit sweep --study digits --trials 30 --objective nll
    dropkit sweep --storage postgresql://me:pw@db/sweeps --study digits --trials 200
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Any

from dropkit._validation import _fail
from dropkit.cli._common import CLIError, Parser

_ERRORS = (ValueError, TypeError, RuntimeError, FileNotFoundError, ImportError)


DESCRIPTION = """\
Run, join or resume an Optuna study of dropout rates.

--task is digits (a dropout MLP on scikit-learn's digits), uci:NAME (a UCI
regression set from --data-dir) or package.module:factory (your own task;
--task-option KEY=VALUE pairs reach the factory).

--trials N is the number of finished (complete or pruned) trials the study
holds at the end, shared by every worker: start the same command on several
machines with one PostgreSQL --storage and they stop together at N. Rerun the
command to resume; trials of a killed worker are marked FAIL. Every number is
checked before the storage is touched.

There is no --sites: each trial's task builds its own model and the search
holds one rate per site kind. To search rates of chosen sites of your own
model, write a factory task that calls dropkit.set_dropout(model, p, sites=...)."""

EXAMPLES = """\
examples:
  dropkit sweep --study digits --trials 30
  dropkit sweep --storage sqlite:///out/sweep.db --study d --trials 20 --epochs 5
  dropkit sweep --task uci:yacht --data-dir data/uci --objective rmse --trials 20
  dropkit sweep --storage postgresql://me:pw@db/sweeps --study digits --trials 200 --seed 1
"""

# built-in task options: name -> (type, minimum, what)
TASK_OPTIONS: dict[str, dict[str, tuple[type, float, str]]] = {
    "digits": {
        "epochs": (int, 1, "an int >= 1"),
        "samples": (int, 1, "an int >= 1"),
        "seed": (int, 0, "an int >= 0"),
    },
    "uci": {
        "epochs": (int, 1, "an int >= 1"),
        "samples": (int, 1, "an int >= 1"),
        "split": (int, 0, "an int >= 0"),
        "tau": (float, 0, "a number > 0"),
    },
}


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dropkit sweep",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--task", default="digits", help="digits, uci:NAME or package.module:factory (digits)")
    add("--data-dir", default=None, help="UCI folder for --task uci:NAME")
    add(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, repeatable: digits takes epochs, samples, seed; uci:NAME takes "
        "epochs, samples, split, tau; a factory gets every pair as strings",
    )
    add("--storage", default="sqlite:///study.db", help="Optuna storage URL (sqlite:///study.db)")
    add("--study", default="dropkit", help="study name shared by cooperating workers (dropkit)")
    add(
        "--trials",
        type=int,
        default=20,
        metavar="N",
        help="finished (complete + pruned) trials the whole study holds at the end, "
        "counted over all its workers (20)",
    )
    add(
        "--objective",
        default="nll",
        help="nll, accuracy, ece, rmse or package.module:function(outputs, targets) (nll)",
    )
    add(
        "--direction",
        default=None,
        choices=("minimize", "maximize"),
        help="default: the objective's own",
    )
    add("--epochs", type=int, default=None, help="epochs per trial (the task's default)")
    add("--samples", type=int, default=None, help="MC passes for validation (the task's default)")
    add("--p-range", default="0,0.5", metavar="LOW,HIGH", help="searched drop rates (0,0.5)")
    add("--seed", type=int, default=None, help="sampler seed (give each worker its own)")
    add(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no new trial after SECONDS (no limit)",
    )
    add("--heartbeat", type=int, default=10, help="seconds between trial heartbeats (10)")
    add(
        "--grace",
        type=int,
        default=None,
        help="seconds without heartbeat before another machine's trial is FAIL (2 x heartbeat)",
    )
    add("--out", type=Path, default=None, help="write a JSON summary here")
    add("--quiet", action="store_true", help="no per-trial lines")
    return parser


def _bad(flag: str, what: str, value: object, fix: str) -> ValueError:
    return _fail(ValueError, "dropkit sweep", f"{flag} {what}", value, fix)


def check_numbers(args: argparse.Namespace) -> None:
    """Validate every number of the command line (nothing is touched before)."""
    if args.trials < 1:
        raise _bad("--trials", ">= 1", args.trials, "Pass the number of trials, e.g. 20.")
    for flag, value in (("--epochs", args.epochs), ("--samples", args.samples)):
        if value is not None and value < 1:
            raise _bad(flag, ">= 1", value, f"Pass e.g. {flag} 5, or leave it out.")
    if args.timeout is not None and not (0 < args.timeout < float("inf")):
        raise _bad("--timeout", "> 0 seconds", args.timeout, "Pass e.g. 3600, or leave it out.")
    if args.heartbeat < 1:
        raise _bad("--heartbeat", ">= 1 second", args.heartbeat, "Pass e.g. 10.")
    if args.grace is not None and args.grace <= args.heartbeat:
        raise _bad(
            "--grace",
            f"> --heartbeat ({args.heartbeat})",
            args.grace,
            "A trial must miss a few heartbeats before it is declared dead.",
        )


def _task_options(task: str, options: dict[str, str]) -> None:
    """Check the options of a built-in task by name and type."""
    kind = "uci" if task.startswith("uci:") else task
    known = TASK_OPTIONS.get(kind)
    if known is None:
        return  # a user factory reads its own options
    for key, value in options.items():
        if key not in known:
            raise ValueError(
                f"dropkit sweep: expected --task-option KEY among {', '.join(known)} for "
                f"--task {task}, but got {key!r}. Drop it, or use a factory task for custom "
                "options."
            )
        cast, minimum, what = known[key]
        try:
            number = cast(value)
        except ValueError:
            number = None
        ok = number is not None and (number > minimum if cast is float else number >= minimum)
        if not ok:
            raise ValueError(
                f"dropkit sweep: expected --task-option {key}= to be {what}, but got "
                f"{value!r}. Write e.g. --task-option {key}={int(minimum) + 1}."
            )


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
    from dropkit.sweep.study import open_storage
    from dropkit.sweep.tasks import load_task

    check_numbers(args)
    objective = _objective(args.objective)
    resolve(objective, args.direction)  # unknown objective: fail before anything exists
    space = SearchSpace(p=_range(args.p_range))
    options = _options(args.task_option)
    for key in ("epochs", "samples"):
        if getattr(args, key) is not None:
            options[key] = str(getattr(args, key))
    _task_options(args.task, options)
    bars: list[_Progress] = []

    def log(line: str) -> None:
        bar = bars[0] if bars else None
        if not args.quiet:
            bar.write(line) if bar is not None else print(line, flush=True)
        if bar is not None and _FINISHED.match(line):
            bar.update()

    train = load_task(args.task, options, data_dir=args.data_dir)
    storage = open_storage(
        args.storage, heartbeat_interval=args.heartbeat, grace_period=args.grace, log=log
    )
    space = space_for(train, p=space.p)
    bar = _Progress(args.trials, enabled=sys.stderr.isatty())
    bars.append(bar)
    try:
        study = _run(train, objective, args, storage, space, log)
    finally:
        bar.close()
    return _summary(study, args)


def _run(train: Any, objective: Any, args: Any, storage: Any, space: Any, log: Any) -> Any:
    from dropkit.sweep.study import run_study

    return run_study(
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


def _summary(study: Any, args: argparse.Namespace) -> dict[str, Any]:
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


_FINISHED = re.compile(r"^trial \d+ (complete|pruned|fail):")


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    return value


class _Progress:
    """A tqdm bar of finished trials on a terminal; plain lines elsewhere."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, unit="trial", desc="sweep", leave=False)

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dropkit sweep``; returns the exit code (2 on bad input)."""
    try:
        args = _parser().parse_args(argv)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        summary = run(args)
    except (CLIError, *_ERRORS) as exc:
        print(f"dropkit: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    best = summary["best"]
    print(f"study {summary['study']!r}: {summary['trials']}")
    if best is not None:
        params = {k: _round(v) for k, v in best["params"].items()}
        print(
            f"best trial {best['number']}: {summary['objective']}={_round(best['value'])} {params}"
        )
    if args.out is not None:
        from dropkit._io import write_json

        write_json(args.out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

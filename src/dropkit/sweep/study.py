"""Dropout sweeps on Optuna, from one laptop to many machines.

A study searches :class:`~dropkit.sweep.space.SearchSpace` (global and
per-kind rates, depth profile, weight decay, rate schedule) against a
validation objective with TPE (Bergstra et al. 2011) and median pruning on
per-epoch reports. Storage is any Optuna RDB URL: an SQLite file by default,
PostgreSQL (or MySQL) when many processes on many machines share one study:
each worker loads the study by name (``load_if_exists``) and stops when the
study holds ``n_trials`` finished (complete or pruned) trials, so rerunning
the same command resumes an interrupted study. Workers send heartbeats; a
worker killed mid-trial leaves its trial RUNNING only until another worker
(or a restart) sees the heartbeat older than the grace period and marks it
FAIL (Optuna's ``fail_stale_trials``). Completed trials are never lost:
Optuna commits each trial's result as it finishes.

References:
    Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization
    Framework", KDD 2019.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from collections.abc import Callable
from typing import Any

from dropkit._validation import check_int
from dropkit.integrations._extras import require
from dropkit.sweep.objectives import UserObjective, check_task, resolve, score
from dropkit.sweep.space import SearchSpace, space_for
from dropkit.sweep.tasks import Train

DEFAULT_STORAGE = "sqlite:///study.db"
_WHERE = "run_study"


def _redact(url: str) -> str:
    """Hide a password in a storage URL before it appears in a message."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _driver(url: str) -> str:
    """Use psycopg2 for ``postgresql://`` when psycopg 3 (SQLAlchemy 2.1's default) is absent."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def open_storage(
    url: str = DEFAULT_STORAGE,
    *,
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Any:
    """Connect to an Optuna RDB storage with heartbeats on; fail fast if unreachable.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://user@host/db``, ...).
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds without a heartbeat before a RUNNING trial is
            failed (default ``2 * heartbeat_interval``).
        log: Called with a line when a stale trial is marked FAIL.

    Returns:
        An ``optuna.storages.RDBStorage``.

    Raises:
        ValueError: If ``url`` is not an SQLAlchemy database URL.
        RuntimeError: If the database cannot be reached or opened (nothing is
            created then).
    """
    optuna = require("optuna", "sweep", _WHERE)
    check_int(_WHERE, heartbeat_interval, "heartbeat_interval")
    if not isinstance(url, str) or not re.match(r"^[a-z][a-z0-9+]*://", url):
        raise ValueError(
            f"{_WHERE}: expected a storage URL such as 'sqlite:///study.db' or "
            f"'postgresql://user:pass@host/db', but got {url!r}. Pass an SQLAlchemy URL."
        )
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        folder = os.path.dirname(os.path.abspath(url[len("sqlite:///") :])) or "."
        if not os.path.isdir(folder):
            raise RuntimeError(
                f"{_WHERE}: expected a reachable storage, but got {url!r} (folder {folder!r} "
                "does not exist). Create the folder or pass another path."
            )

    given, url = url, _driver(url)

    def stale(study: Any, trial: Any) -> None:
        log(f"trial {trial.number} had no heartbeat for {grace}s: marked FAIL")

    grace = grace_period or 2 * heartbeat_interval
    engine_kwargs = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgres") else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=stale,
            )
    except Exception as exc:  # sqlalchemy's OperationalError, ArgumentError, ImportError...
        text = _redact(str(exc).strip())
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
        raise RuntimeError(
            f"{_WHERE}: expected a reachable storage, but got {_redact(given)!r} ({reason}). "
            "Check the host, port, database name and credentials (and that the server runs)."
        ) from None


def run_study(
    train: Train,
    *,
    objective: str | UserObjective = "nll",
    direction: str | None = None,
    storage: str | Any = DEFAULT_STORAGE,
    study_name: str = "dropkit",
    n_trials: int = 20,
    space: SearchSpace | None = None,
    seed: int | None = None,
    timeout: float | None = None,
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
    pruner: Any = None,
    log: Callable[[str], None] = lambda line: None,
) -> Any:
    """Run (or join, or resume) a dropout study until it holds ``n_trials`` finished trials.

    Args:
        train: Training function (see :mod:`dropkit.sweep.tasks`).
        objective: ``"nll"``, ``"accuracy"``, ``"ece"``, ``"rmse"`` or
            ``callable(outputs, targets) -> float``.
        direction: ``"minimize"``/``"maximize"``; defaults to the objective's.
        storage: URL (SQLite file by default) or an opened storage.
        study_name: Workers with the same storage and name share one study.
        n_trials: Target number of finished (complete + pruned) trials in the
            whole study; concurrent workers may each add one more.
        space: Search space; default :func:`~dropkit.sweep.space.space_for`
            the task (its kinds, profiles, schedules and weight-decay range).
        seed: Sampler seed (give workers different seeds).
        timeout: Stop this worker after this many seconds.
        heartbeat_interval: Seconds between heartbeats of a running trial.
        grace_period: Seconds without heartbeat before a trial is failed.
        pruner: An Optuna pruner; default ``MedianPruner(n_startup_trials=3,
            n_warmup_steps=1)`` on the per-epoch reports.
        log: Called with one line per finished trial.

    Returns:
        The ``optuna.Study``.

    Raises:
        ValueError: Unknown objective, an objective that does not fit the
            task, a bad direction, name or trial count, or a study whose
            direction differs. Checked before the storage is touched.
        RuntimeError: Unreachable storage.
    """
    optuna = require("optuna", "sweep", _WHERE)
    name, direction = resolve(objective, direction)
    check_task(objective, getattr(train, "kind", "classification"))
    check_int(_WHERE, n_trials, "n_trials")
    if not isinstance(study_name, str) or not study_name:
        raise ValueError(
            f"{_WHERE}: expected a non-empty study name, but got {study_name!r}. "
            "Pass e.g. 'digits-dropout'."
        )
    if space is None:
        space = space_for(train)
    if isinstance(storage, str):
        storage = open_storage(
            storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period, log=log
        )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    wanted = (
        optuna.study.StudyDirection.MINIMIZE
        if direction == "minimize"
        else (optuna.study.StudyDirection.MAXIMIZE)
    )
    if study.direction != wanted:
        raise ValueError(
            f"{_WHERE}: expected study {study_name!r} to {direction} {name}, but got a study "
            f"that is set to {study.direction.name.lower()}. Use another study name."
        )
    known = study.user_attrs.get("objective")
    if known is not None and known != name:
        raise ValueError(
            f"{_WHERE}: expected study {study_name!r} to optimise {name}, but got a study of "
            f"{known!r}. Use the same --objective, or another study name."
        )
    if known is None:
        study.set_user_attr("objective", name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective_fn(trial: Any) -> float:
        trial.set_user_attr("worker", worker)
        params = space.suggest(trial)

        def report(epoch: int, preds: Any) -> None:
            trial.report(score(objective, preds), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return score(objective, train(params, report))

    def logged(study: Any, trial: Any) -> None:
        log(f"trial {trial.number} {trial.state.name.lower()}: {name}={trial.value} {trial.params}")

    if len(study.get_trials(deepcopy=False, states=finished)) < n_trials:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(
                objective_fn,
                timeout=timeout,
                callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=finished), logged],
            )
    return study

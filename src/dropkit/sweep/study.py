"""Dropout sweeps on Optuna, from one laptop to many machines.

A study searches :class:`~dropkit.sweep.space.SearchSpace` (global and
per-kind rates, depth profile, weight decay, rate schedule) against a
validation objective with TPE (Bergstra et al. 2011) and median pruning on
per-epoch reports. Storage is any Optuna RDB URL: an SQLite file by default,
PostgreSQL (or MySQL) when many processes on many machines share one study:
each worker loads the study by name (``load_if_exists``), so rerunning the
same command resumes an interrupted study.

``n_trials`` is the number of finished (complete or pruned) trials the whole
study should hold, however many workers share it. A worker starts a trial
only while finished plus running trials are fewer than ``n_trials``; the
check and the trial's creation happen under a lock (the SQLite file's
``flock``, a PostgreSQL advisory lock), so two workers never both take the
last slot. On other databases a worker that finds it took a slot too many
stops that trial at once and marks it FAIL with the user attribute
``surplus``. When a running trial fails, a slot opens again and a waiting
worker fills it.

No RUNNING zombies: a trial whose worker ran on this machine and no longer
exists (SIGKILL, a crash) is failed at once; a trial of another machine is
failed once its heartbeat is older than the grace period (Optuna's
``fail_stale_trials``). A worker checks both before each trial and, before
it returns, waits (at most the grace period plus a heartbeat) for the
running trials of others to finish or go stale, so once a study run ends no
trial is left RUNNING. Completed trials are never lost: Optuna commits each
trial's result as it finishes.

Several workers starting at once on a new SQLite file serialise the schema
creation (``flock`` on the file), and any database's creation race
("already exists") is retried.

References:
    Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization
    Framework", KDD 2019.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dropkit._optional import require
from dropkit._validation import check_int
from dropkit.sweep.objectives import Predictions, UserObjective, check_task, resolve, score
from dropkit.sweep.space import SearchSpace, space_for
from dropkit.sweep.tasks import Train

if TYPE_CHECKING:
    import optuna

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
) -> optuna.storages.RDBStorage:
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
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgres"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    elif url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # concurrent writers wait, not fail
    attempts = 6
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings(), _file_lock(_sqlite_path(url), create=True):
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=stale,
                )
            storage.dropkit_url = url  # type: ignore[attr-defined]
            return storage
        except Exception as exc:  # sqlalchemy's OperationalError, ArgumentError, ImportError...
            text = _redact(str(exc).strip())
            if attempt + 1 < attempts and _RACE.search(text):
                time.sleep(0.2 * 2**attempt)  # another worker is creating the schema
                continue
            reason = text.splitlines()[0][:200] if text else type(exc).__name__
            raise RuntimeError(
                f"{_WHERE}: expected a reachable storage, but got {_redact(given)!r} ({reason}). "
                "Check the host, port, database name and credentials (and that the server runs)."
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


_RACE = re.compile(r"already exists|UNIQUE constraint|duplicate key|database is locked", re.I)


def _sqlite_path(url: str) -> str | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return os.path.abspath(url[len("sqlite:///") :])
    return None


@contextlib.contextmanager
def _file_lock(path: str | None, *, create: bool = False) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (nothing when None or not possible).

    SQLite itself locks with ``fcntl`` record locks, which are independent of
    ``flock``, so holding this lock never blocks SQLite; it only orders
    dropkit workers among themselves. ``create`` makes the (empty) file,
    which SQLite treats as a new database.
    """
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(path, (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _advisory_lock(storage: Any, name: str) -> Iterator[bool]:
    """A PostgreSQL advisory lock for ``name``; yields whether a lock is held."""
    url = getattr(storage, "dropkit_url", "")
    engine = getattr(storage, "engine", None)
    if not url.startswith("postgres") or engine is None:
        yield False
        return
    from sqlalchemy import text

    key = zlib.crc32(f"dropkit-sweep:{name}".encode())
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield True
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


@contextlib.contextmanager
def _slot_lock(storage: Any, name: str) -> Iterator[bool]:
    """The lock under which a worker counts trials and creates its next one."""
    path = _sqlite_path(getattr(storage, "dropkit_url", ""))
    if path is not None:
        with _file_lock(path):
            yield True
        return
    with _advisory_lock(storage, name) as held:
        yield held


def check_timeout(caller: str, timeout: object, name: str = "timeout") -> float | None:
    """``None`` or a positive, finite number of seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{caller}: expected {name} to be a number of seconds, but got {timeout!r}. "
            "Pass e.g. 3600, or None for no limit."
        )
    if not (timeout > 0 and timeout != float("inf")):
        raise ValueError(
            f"{caller}: expected {name} > 0 seconds, but got {timeout!r}. "
            "Pass e.g. 3600, or leave it out for no limit."
        )
    return float(timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # exists, owned by someone else
    return True


def _dead_here(trial: Any, host: str) -> bool:
    """Whether ``trial``'s worker ran on this machine and no longer exists."""
    worker = str(trial.user_attrs.get("worker", ""))
    name, _, pid = worker.rpartition(":")
    return name == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


class _Surplus(Exception):
    """This worker's trial would exceed the study's target (no lock on this database)."""


def run_study(
    train: Train,
    *,
    objective: str | UserObjective = "nll",
    direction: str | None = None,
    storage: str | optuna.storages.BaseStorage = DEFAULT_STORAGE,
    study_name: str = "dropkit",
    n_trials: int = 20,
    space: SearchSpace | None = None,
    seed: int | None = None,
    timeout: float | None = None,
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> optuna.Study:
    """Run (or join, or resume) a dropout study until it holds ``n_trials`` finished trials.

    Args:
        train: Training function (see :mod:`dropkit.sweep.tasks`).
        objective: ``"nll"``, ``"accuracy"``, ``"ece"``, ``"rmse"`` or
            ``callable(outputs, targets) -> float``.
        direction: ``"minimize"``/``"maximize"``; defaults to the objective's.
        storage: URL (SQLite file by default) or an opened storage.
        study_name: Workers with the same storage and name share one study.
        n_trials: Target number of finished (complete + pruned) trials in the
            whole study, shared by all its workers (see the module docstring).
        space: Search space; default :func:`~dropkit.sweep.space.space_for`
            the task (its kinds, profiles, schedules and weight-decay range).
        seed: Sampler seed (give workers different seeds).
        timeout: Start no new trial after this many seconds (a running trial
            finishes).
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
    check_timeout(_WHERE, timeout)
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
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    host = socket.gethostname()
    worker = f"{host}:{os.getpid()}"
    grace = _grace(study)

    def reap() -> list[Any]:
        """Fail zombie trials; return the trials that are still RUNNING."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        running = []
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if _dead_here(t, host):
                try:
                    study._storage.set_trial_state_values(
                        t._trial_id, state=optuna.trial.TrialState.FAIL
                    )
                    log(f"trial {t.number} lost its worker {t.user_attrs['worker']}: marked FAIL")
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass  # another worker did it, or the trial ended meanwhile
            else:
                running.append(t)
        return running

    release: list[Callable[[], None]] = []

    def objective_fn(trial: Any) -> float:
        trial.set_user_attr("worker", worker)
        while release:  # the trial exists now: let other workers count it
            release.pop()()
        earlier = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.number < trial.number
            and (t.state in finished or t.state == optuna.trial.TrialState.RUNNING)
        ]
        if len(earlier) >= n_trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus
        params = space.suggest(trial)

        def report(epoch: int, preds: Predictions) -> None:
            trial.report(score(objective, preds), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return score(objective, train(params, report))

    def logged(study: Any, trial: Any) -> None:
        value = "" if trial.value is None else f"{trial.value:.4g}"
        params = {
            k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in trial.params.items()
        }
        log(f"trial {trial.number} {trial.state.name.lower()}: {name}={value} {params}")

    start = time.monotonic()
    poll = min(1.0, max(0.1, heartbeat_interval / 4))
    reached = False
    while timeout is None or time.monotonic() - start < timeout:
        reap()
        with contextlib.ExitStack() as stack:
            held = stack.enter_context(_slot_lock(study._storage, study_name))
            done = len(study.get_trials(deepcopy=False, states=finished))
            if done >= n_trials:
                reached = True
                break
            busy = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
            if done + busy >= n_trials:
                wait = True
            else:
                wait = False
                release.append(stack.pop_all().close if held else (lambda: None))
        if wait:  # the last slots are taken; one may open again if its trial fails
            time.sleep(poll)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective_fn, n_trials=1, callbacks=[logged])
        except _Surplus:
            reached = True
            break
        finally:
            while release:  # optimize failed before the trial started
                release.pop()()
    # Target reached: no other trial can still be legitimately running (the slot
    # lock saw to that), so any RUNNING one belongs to a dead worker; wait for
    # it to go stale and fail it. After a timeout, only reap what is known dead.
    deadline = time.monotonic() + (grace + heartbeat_interval + 5 if reached else 0)
    while reap() and time.monotonic() < deadline:
        time.sleep(poll)
    return study


def _grace(study: Any) -> float:
    storage = study._storage
    grace = getattr(storage, "grace_period", None)
    return float(grace) if grace else 2.0 * float(getattr(storage, "heartbeat_interval", 10) or 10)

"""Two `dropkit sweep` worker processes on one PostgreSQL study; one is SIGKILLed mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

HERE = Path(__file__).resolve().parent
GRACE = 3


def _worker(url: str, trials: int, seed: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    cmd = [
        sys.executable,
        "-m",
        "dropkit.cli.sweep",
        "--task",
        "_tasks:factory",
        "--task-option",
        "delay=0.25",
        "--task-option",
        "epochs=4",
        "--storage",
        url,
        "--study",
        "pg",
        "--trials",
        str(trials),
        "--seed",
        str(seed),
        "--heartbeat",
        "1",
        "--grace",
        str(GRACE),
        "--quiet",
    ]
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="pg", storage=url.replace("://", "+psycopg2://", 1))


def _wait_for_study(url: str, deadline: float) -> optuna.Study:
    while time.monotonic() < deadline:
        try:
            return _study(url)
        except KeyError:  # not created yet
            time.sleep(0.2)
    raise AssertionError("no worker created the study in time")


def test_two_workers_one_killed_mid_trial(postgres_url: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + 50
    a = _worker(postgres_url, 6, 0, tmp_path / "a.log")
    b = _worker(postgres_url, 6, 1, tmp_path / "b.log")
    try:
        study = _wait_for_study(postgres_url, deadline)
        victim = None
        while victim is None and time.monotonic() < deadline:
            trials = study.get_trials(deepcopy=False)
            finished = [t for t in trials if t.state.is_finished()]
            running = [
                t
                for t in trials
                if t.state.name == "RUNNING"
                and t.user_attrs.get("worker", "").endswith(f":{a.pid}")
            ]
            if finished and running:
                victim = running[0].number
                a.send_signal(signal.SIGKILL)  # mid-trial: no chance to clean up
                kept = {t.number: t.value for t in finished if t.state.name == "COMPLETE"}
            else:
                time.sleep(0.05)
        assert victim is not None, "worker A never ran a trial"
        killed_at = time.monotonic()
        a.wait(timeout=10)
        assert b.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, (
            tmp_path / "b.log"
        ).read_text()
        # resume: a fresh worker raises the target; it first fails the stale trial
        time.sleep(max(GRACE + 1 - (time.monotonic() - killed_at), 0))
        c = _worker(postgres_url, 8, 2, tmp_path / "c.log")
        assert c.wait(timeout=max(deadline + 10 - time.monotonic(), 1)) == 0, (
            tmp_path / "c.log"
        ).read_text()
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
    trials = {t.number: t for t in _study(postgres_url).get_trials()}
    assert trials[victim].state.name == "FAIL"
    assert trials[victim].user_attrs["worker"].endswith(f":{a.pid}")
    assert all(trials[n].state.name == "COMPLETE" and trials[n].value == v for n, v in kept.items())
    states = [t.state.name for t in trials.values()]
    assert "RUNNING" not in states and "WAITING" not in states
    assert states.count("FAIL") == 1
    assert states.count("COMPLETE") + states.count("PRUNED") == 8
    assert len(trials) == 9

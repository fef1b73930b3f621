"""`dropkit sweep` keeps its study consistent: exact trial counts, no zombies, no races."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from dropkit.cli import sweep as cli

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DROPKIT = str(Path(sys.executable).with_name("dropkit"))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]), "OMP_NUM_THREADS": "1"}


def _worker(
    url: str, trials: int, seed: int, log: Path, delay: float = 0.2, grace: int = 3
) -> subprocess.Popen:
    cmd = [
        DROPKIT, "sweep", "--task", "_tasks:factory", "--task-option", f"delay={delay}",
        "--task-option", "epochs=3", "--storage", url, "--study", "s", "--trials", str(trials),
        "--seed", str(seed), "--heartbeat", "1", "--grace", str(grace),
    ]  # fmt: skip
    with open(log, "wb") as handle:
        return subprocess.Popen(cmd, env=ENV, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def _states(url: str) -> list[str]:
    return [t.state.name for t in optuna.load_study(study_name="s", storage=url).trials]


def test_two_workers_on_a_new_sqlite_file_both_finish_with_exactly_n(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    workers = [_worker(url, 5, seed, tmp_path / f"w{seed}.log") for seed in (0, 1)]
    for k, proc in enumerate(workers):
        assert proc.wait(timeout=240) == 0, (tmp_path / f"w{k}.log").read_text()[-3000:]
    states = _states(url)
    # --trials 5 means 5 finished trials in the study, not 5 per worker (or 5 + 1)
    assert states.count("COMPLETE") + states.count("PRUNED") == 5
    assert len(states) == 5, states
    logs = [(tmp_path / f"w{k}.log").read_text() for k in (0, 1)]
    assert all("expected a reachable storage" not in text for text in logs)
    assert all(re.search(r"trial \d+ (complete|pruned)", text) for text in logs), logs


def test_sigkill_then_immediate_resume_leaves_no_running_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    # a grace period far longer than the test: the heartbeat rule cannot fire, so the
    # killed trial must be failed because its worker (on this machine) is gone
    a = _worker(url, 4, 0, tmp_path / "a.log", delay=0.5, grace=600)
    deadline = time.monotonic() + 120
    victim = None
    try:
        while victim is None and time.monotonic() < deadline:
            try:
                trials = optuna.load_study(study_name="s", storage=url).trials
            except (KeyError, Exception):  # not created yet
                trials = []
            running = [t for t in trials if t.state.name == "RUNNING" and t.user_attrs]
            if running:
                victim = running[0].number
                a.send_signal(signal.SIGKILL)  # mid-trial, no clean-up
            else:
                time.sleep(0.05)
        assert victim is not None, (tmp_path / "a.log").read_text()
        a.wait(timeout=10)
        b = _worker(url, 4, 1, tmp_path / "b.log", delay=0.05, grace=600)  # at once
        assert b.wait(timeout=240) == 0, (tmp_path / "b.log").read_text()[-3000:]
    finally:
        if a.poll() is None:
            a.kill()
    trials = optuna.load_study(study_name="s", storage=url).trials
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states
    assert trials[victim].state.name == "FAIL"
    assert f"trial {victim} lost its worker" in (tmp_path / "b.log").read_text()
    assert states.count("COMPLETE") + states.count("PRUNED") == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "0"], r"expected --epochs >= 1, but got 0"),
        (["--samples", "-1"], r"expected --samples >= 1, but got -1"),
        (["--trials", "0"], r"expected --trials >= 1, but got 0"),
        (["--timeout", "-5"], r"expected --timeout > 0 seconds, but got -5\.0"),
        (["--timeout", "nan"], r"expected --timeout > 0 seconds, but got nan"),
        (["--heartbeat", "0"], r"expected --heartbeat >= 1 second, but got 0"),
        (["--grace", "1"], r"expected --grace > --heartbeat \(10\), but got 1"),
        (["--task-option", "epochs=abc"], r"expected --task-option epochs= to be an int >= 1"),
        (["--task-option", "epochs=0"], r"expected --task-option epochs= to be an int >= 1"),
        (["--task-option", "split=1"], r"expected --task-option KEY among epochs, samples, seed"),
        (["--trials", "x"], r"dropkit sweep: argument --trials: invalid int value: 'x'"),
    ],
)
def test_every_number_is_checked_before_the_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    db = tmp_path / "v.db"
    assert cli.main(["--storage", f"sqlite:///{db}", "--study", "v", *extra]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dropkit: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert not db.exists()


def test_uci_task_option_names_the_option(
    tmp_path: Path, uci_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "u.db"
    args = ["--task", "uci:yacht", "--data-dir", str(uci_dir), "--storage", f"sqlite:///{db}"]
    assert cli.main([*args, "--task-option", "split=2.0"]) == 2
    err = capsys.readouterr().err
    assert "expected --task-option split= to be an int >= 0, but got '2.0'" in err
    assert cli.main([*args, "--task-option", "tau=-1"]) == 2
    assert "expected --task-option tau= to be a number > 0, but got '-1'" in capsys.readouterr().err
    assert not db.exists()


def test_sweep_help_and_errors_through_the_real_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [DROPKIT, "sweep", "--help"], capture_output=True, text=True, env=ENV, timeout=120
    )
    assert done.returncode == 0 and done.stderr == ""
    out = done.stdout
    assert "usage: dropkit sweep" in out and "examples:\n  dropkit sweep " in out
    assert "(sqlite:///study.db)" in out and "all its workers (20)" in out
    assert "``" not in out and ":mod:" not in out and ":func:" not in out
    db = tmp_path / "e.db"
    done = subprocess.run(
        [DROPKIT, "sweep", "--storage", f"sqlite:///{db}", "--epochs", "0"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "dropkit: error: dropkit sweep: expected --epochs >= 1, but got 0. "
        "Pass e.g. --epochs 5, or leave it out."
    ]
    assert not db.exists()


def _significant(line: str) -> int:
    """The most significant digits of any decimal number in ``line``."""
    mantissas = re.findall(r"(\d+\.\d+)(?:e[-+]?\d+)?", line)
    return max((len(m.replace(".", "").lstrip("0")) for m in mantissas), default=0)


def test_summary_floats_are_rounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(HERE))
    try:
        url = f"sqlite:///{tmp_path / 'r.db'}"
        args = ["--task", "_tasks:factory", "--storage", url, "--study", "r", "--trials", "3"]
        assert cli.main([*args, "--task-option", "epochs=1", "--seed", "0"]) == 0
    finally:
        sys.path.remove(str(HERE))
    out = capsys.readouterr().out
    best = next(line for line in out.splitlines() if line.startswith("best trial"))
    assert 0 < _significant(best) <= 4, best
    trial_lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == 3
    assert all(_significant(line) <= 4 for line in trial_lines), trial_lines


def test_run_study_checks_timeout() -> None:
    from dropkit.sweep.study import run_study

    def train(params: dict[str, Any], report: Any) -> Any:
        raise AssertionError("must not train")

    with pytest.raises(ValueError, match=r"run_study: expected timeout > 0 seconds, but got -5"):
        run_study(train, storage="sqlite:///never.db", timeout=-5)
    with pytest.raises(TypeError, match=r"expected timeout to be a number of seconds"):
        run_study(train, storage="sqlite:///never.db", timeout="5")
    assert not Path("never.db").exists()

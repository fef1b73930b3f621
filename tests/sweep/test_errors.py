"""Every remaining user-facing error of dropkit.sweep, pinned (UCI engine: tests/bench/uci)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dropkit.cli import sweep as cli
from dropkit.sweep.objectives import Predictions, resolve, score
from dropkit.sweep.space import SearchSpace
from dropkit.sweep.study import run_study
from dropkit.sweep.tasks import load_task


def test_objective_errors() -> None:
    with pytest.raises(ValueError, match=r"expected direction 'minimize' or 'maximize', but got"):
        resolve("nll", "down")
    with pytest.raises(TypeError, match=r"expected a metric name or a callable"):
        resolve(3, None)
    preds = Predictions(torch.zeros(4, 3), torch.zeros(3), "regression", None)
    with pytest.raises(ValueError, match=r"expected Predictions.tau > 0 for a regression NLL"):
        score("nll", preds)


def test_space_errors() -> None:
    with pytest.raises(ValueError, match=r"SearchSpace: expected profile to be one of"):
        SearchSpace(profiles=("zigzag",))
    with pytest.raises(ValueError, match=r"SearchSpace: expected schedule to be one of"):
        SearchSpace(schedules=("cyclic",))
    with pytest.raises(ValueError, match=r"expected at least one profile and one schedule"):
        SearchSpace(profiles=())
    with pytest.raises(ValueError, match=r"expected 0 < low <= high for weight_decay"):
        SearchSpace(weight_decay=(0.0, 1.0))


def test_study_and_task_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match=r"run_study: expected a non-empty study name"):
        run_study(lambda params, report: None, study_name="", storage="sqlite:///x.db")
    with pytest.raises(ValueError, match=r"expected 'digits', 'uci:NAME' or 'package.module"):
        load_task("mnist", {})
    assert cli.main(["--objective", "nosuch.mod:fn", "--storage", "sqlite:///x.db"]) == 2
    assert "expected an importable objective" in capsys.readouterr().err
    assert not Path("x.db").exists()

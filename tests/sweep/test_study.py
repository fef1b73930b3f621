from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from dropkit.cli import sweep as cli
from dropkit.sweep.objectives import Predictions, score
from dropkit.sweep.space import SearchSpace, site_rate
from dropkit.sweep.study import open_storage, run_study

HERE = Path(__file__).resolve().parent


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(HERE))
    return importlib.import_module("_tasks")


def _states(study: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_sqlite_study_runs_prunes_and_resumes(tasks: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    train = tasks.factory({"epochs": "4"})
    first = run_study(train, storage=url, study_name="s", n_trials=8, seed=0)
    done = {t.number: t.value for t in first.get_trials() if t.state.name == "COMPLETE"}
    states = _states(first)
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 8
    assert states.get("PRUNED", 0) >= 1  # median pruning on per-epoch reports
    assert first.best_value == min(done.values())
    # resume: same study, higher target; earlier trials are kept as they were
    again = run_study(train, storage=url, study_name="s", n_trials=11, seed=1)
    after = {t.number: t.value for t in again.get_trials() if t.state.name == "COMPLETE"}
    assert all(after[n] == v for n, v in done.items())
    states = _states(again)
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 11
    # already at target: joining does nothing
    assert len(run_study(train, storage=url, study_name="s", n_trials=5).trials) == 11


def test_objectives_and_user_callable(tasks: Any, tmp_path: Path) -> None:
    preds = Predictions(tasks.quality(0.15), torch.zeros(20, dtype=torch.int64))
    assert score("nll", preds) == pytest.approx(-torch.log(torch.tensor(0.8)).item())
    assert score("accuracy", preds) == 1.0
    assert score("ece", preds) == pytest.approx(0.2)  # confidence 0.8, accuracy 1

    def miss_rate(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return float(1 - outputs[:, 0].mean())

    study = run_study(
        tasks.factory({"epochs": "1"}),
        objective=miss_rate,
        n_trials=3,
        storage=f"sqlite:///{tmp_path / 'u.db'}",
        study_name="u",
    )
    best = study.best_trial
    assert best.value == pytest.approx(best.params["p"] + 0.05)


def test_bad_objective_or_storage_creates_nothing(tasks: Any, tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    train = tasks.factory({})
    with pytest.raises(
        ValueError,
        match=r"sweep objective: expected one of \['accuracy', 'ece', "
        r"'nll', 'rmse'\], but got 'auc'",
    ):
        run_study(train, objective="auc", storage=f"sqlite:///{db}")
    with pytest.raises(
        ValueError,
        match=r"expected an objective for regression, but got "
        r"'accuracy'. Use one of nll, rmse",
    ):
        run_study(tasks.regression_factory({}), objective="accuracy", storage=f"sqlite:///{db}")
    assert not db.exists()
    with pytest.raises(
        RuntimeError,
        match=r"run_study: expected a reachable storage, but got "
        r"'postgresql://me:\*\*\*@127.0.0.1:1/x'",
    ):
        open_storage("postgresql://me:secret@127.0.0.1:1/x")
    with pytest.raises(RuntimeError, match=r"folder .*missing.* does not exist"):
        open_storage(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(ValueError, match=r"run_study: expected a storage URL such as"):
        open_storage("study.db")


def test_study_objective_and_direction_must_match(tasks: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    run_study(tasks.factory({"epochs": "1"}), storage=url, study_name="m", n_trials=1)
    with pytest.raises(
        ValueError,
        match=r"expected study 'm' to optimise ece, but got a study "
        r"of 'nll'",
    ):
        run_study(tasks.factory({}), objective="ece", storage=url, study_name="m", n_trials=2)
    with pytest.raises(
        ValueError,
        match=r"expected study 'm' to maximize accuracy, but got a "
        r"study that is set to minimize",
    ):
        run_study(tasks.factory({}), objective="accuracy", storage=url, study_name="m")
    assert len(optuna.load_study(study_name="m", storage=url).trials) == 1


def test_search_space_and_site_rates() -> None:
    assert site_rate({"p": 0.4, "profile": "constant"}, "element", 0.3) == 0.4
    assert site_rate({"p": 0.4, "profile": "increasing"}, "element", 0.25) == pytest.approx(0.1)
    assert site_rate({"p": 0.4, "profile": "decreasing"}, "element", 0.25) == pytest.approx(0.3)
    warm = {
        "p": 0.4,
        "p_attention": 0.2,
        "profile": "constant",
        "schedule": "warmup",
        "warmup": 0.5,
    }
    assert site_rate(warm, "attention", 0.0, progress=0.25) == pytest.approx(0.1)
    assert site_rate(warm, "element", 0.0, progress=0.9) == pytest.approx(0.4)
    trial = optuna.trial.FixedTrial(
        {
            "p": 0.1,
            "p_attention": 0.2,
            "profile": "increasing",
            "weight_decay": 1e-4,
            "schedule": "constant",
        }
    )
    params = SearchSpace(kinds=("attention",)).suggest(trial)
    assert params == {
        "p": 0.1,
        "p_attention": 0.2,
        "profile": "increasing",
        "weight_decay": 1e-4,
        "schedule": "constant",
    }
    with pytest.raises(ValueError, match=r"SearchSpace: expected kind to be one of"):
        SearchSpace(kinds=("dense",))
    with pytest.raises(ValueError, match=r"SearchSpace: expected p range in \[0, 1\)"):
        SearchSpace(p=(0.0, 1.5))
    with pytest.raises(ValueError, match=r"SearchSpace: expected p range low <= high"):
        SearchSpace(p=(0.4, 0.1))


def test_cli_runs_and_reports_errors_in_one_line(tasks: Any, tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    args = [
        "--task",
        "_tasks:factory",
        "--storage",
        url,
        "--study",
        "c",
        "--trials",
        "3",
        "--task-option",
        "epochs=2",
        "--out",
        str(tmp_path / "c.json"),
        "--quiet",
    ]
    assert cli.main(args) == 0
    assert "best trial" in capsys.readouterr().out
    assert (tmp_path / "c.json").exists()
    cases = [
        (["--objective", "auc"], r"expected one of \['accuracy', 'ece', 'nll', 'rmse'\]"),
        (["--storage", "postgresql://u:pw@127.0.0.1:1/x"], r"expected a reachable storage"),
        (["--task", "nosuch.module:f"], r"expected an importable factory"),
        (["--task", "uci:yacht"], r"expected --data-dir with 'uci:yacht'"),
        (["--task-option", "epochs"], r"expected --task-option KEY=VALUE"),
        (["--p-range", "0.1"], r"expected --p-range LOW,HIGH"),
    ]
    for extra, message in cases:
        assert cli.main(["--storage", f"sqlite:///{tmp_path / 'e.db'}", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dropkit: error: ") and len(err.strip().splitlines()) == 1
        assert __import__("re").search(message, err), err
    assert not (tmp_path / "e.db").exists()


def test_uci_task_sweep_from_the_cli(uci_dir: Path, tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'y.db'}"
    base = [
        "--task",
        "uci:yacht",
        "--data-dir",
        str(uci_dir),
        "--storage",
        url,
        "--study",
        "y",
        "--epochs",
        "4",
        "--samples",
        "10",
        "--quiet",
    ]
    assert cli.main([*base, "--trials", "2", "--objective", "rmse"]) == 0
    trials = optuna.load_study(study_name="y", storage=url).trials
    assert len(trials) == 2
    # the UCI network has one rate for both sites and no schedule: the space says so
    for trial in trials:
        assert trial.params["profile"] == "constant" and trial.params["schedule"] == "constant"
        assert 1e-8 <= trial.params["weight_decay"] <= 1e-4
    assert cli.main([*base, "--trials", "3", "--objective", "accuracy"]) == 2
    assert "expected an objective for regression, but got 'accuracy'" in capsys.readouterr().err

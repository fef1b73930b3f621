"""`dropkit bench schedules`: a tiny run end to end, JSON contents, bad arguments."""

from __future__ import annotations

import json

import pytest

from dropkit.bench import schedules as bench
from dropkit.cli import main as cli


def test_tiny_run_writes_table_and_json(tmp_path, capsys) -> None:
    out = tmp_path / "schedules.json"
    argv = ["--seeds", "2", "--epochs", "3", "--hidden", "64", "--lr", "0.01", "--out", str(out)]
    assert bench.main(argv) == 0
    table = capsys.readouterr().out
    for method in bench.METHODS:
        assert method in table
    payload = json.loads(out.read_text())
    assert payload["config"]["seeds"] == 2 and payload["config"]["epochs"] == 3
    results = payload["results"]
    assert list(results) == list(bench.METHODS)
    for r in results.values():
        assert len(r["runs"]) == 2 and 0.0 < r["nll"]["mean"] < 2.3  # below chance: log(10)
        assert r["accuracy"]["mean"] > 0.6  # far above chance (0.1) after 3 epochs
        values = [run["nll"] for run in r["runs"]]
        assert r["nll"]["mean"] == pytest.approx(sum(values) / 2)
    # Rates at the end of training follow each method's schedule.
    assert results["none"]["final_p"] == [0.0, 0.0]
    assert results["fixed"]["final_p"] == [0.3, 0.3]
    last_step = 3 * 8 - 1  # 3 epochs of ceil(500 / 64) = 8 steps
    last = round(bench.schedule_for("cosine", 0.3, last_step + 1)(last_step), 4)
    assert results["cosine"]["final_p"] == [last, last] and 0 < last < 0.01
    assert results["early"]["final_p"] == [0.0, 0.0]
    assert all(0.0 < p < 1.0 for p in results["concrete"]["final_p"])


def test_schedules_used_by_the_bench() -> None:
    assert bench.schedule_for("none", 0.3, 100) is None
    assert bench.schedule_for("early", 0.3, 100)(19) == 0.3
    assert bench.schedule_for("early", 0.3, 100)(20) == 0.0
    cosine = bench.schedule_for("cosine", 0.3, 100)
    assert cosine(0) == 0.5 and cosine(100) == 0.0


def test_bad_arguments_are_one_line_errors(capsys) -> None:
    with pytest.raises(ValueError, match=r"bench schedules: expected methods among"):
        bench.main(["--methods", "fixed,magic"])
    with pytest.raises(ValueError, match=r"bench schedules: expected p in \[0, 1\), but got 1.5"):
        bench.main(["--p", "1.5"])
    assert cli(["bench", "schedules", "--train-size", "1700"]) == 2
    assert "expected --train-size in [1, 1500], but got 1700" in capsys.readouterr().err

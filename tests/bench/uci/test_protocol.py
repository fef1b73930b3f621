from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dropkit.bench import uci as bench_uci
from dropkit.bench.uci.batched import BatchedMLP
from dropkit.bench.uci.data import load_uci
from dropkit.bench.uci.protocol import ProtocolSettings, run_uci


def test_quick_bench_end_to_end(uci_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "uci"
    assert bench_uci.main(["--quick", "--data-dir", str(uci_dir), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "yacht" in printed and "0.666 ± 0.049" in printed  # published grid-search column
    assert captured.err == ""  # progress lines only on a terminal or with --verbose
    # a second run into the same folder resumes every split; --verbose logs it to a pipe
    assert (
        bench_uci.main(["--quick", "--data-dir", str(uci_dir), "--out", str(out), "--verbose"]) == 0
    )
    assert "yacht" in capsys.readouterr().err
    result = json.loads((out / "uci.json").read_text())["datasets"]["yacht"]
    assert result["splits"] == 2 and result["epochs"] == 40 and result["samples"] == 100
    assert result["complete"] is False and result["full_protocol"] is False
    for record in result["per_split"]:
        assert len(record["val_ll"]) == 12
        best = record["val_ll"].index(max(record["val_ll"]))  # first maximum wins
        assert (record["p"], record["tau"]) == load_uci(uci_dir, "yacht").grid[best]
        assert record["rmse"] > 0 and record["ll"] < 0
    assert sorted(p.name for p in (out / "yacht").iterdir()) == [
        "grid.json",
        "split_0.json",
        "split_1.json",
    ]


def test_interrupted_run_resumes_to_identical_results(
    uci_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_uci(uci_dir, "yacht")
    settings = ProtocolSettings(epochs=6, samples=20, checkpoint_seconds=0.0)
    straight = run_uci(data, [0], tmp_path / "a", settings)
    folder = tmp_path / "b" / "yacht"

    # 1. killed in the middle of the grid's training (during epoch 4)
    calls = {"n": 0}
    epoch = BatchedMLP._epoch

    def dying_epoch(self: BatchedMLP) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        epoch(self)

    monkeypatch.setattr(BatchedMLP, "_epoch", dying_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_uci(data, [0], tmp_path / "b", settings)
    monkeypatch.setattr(BatchedMLP, "_epoch", epoch)
    assert (folder / "state-grid.pt").exists() and not (folder / "split_0.json").exists()

    # 2. resumed, then killed during the MC validation that follows training
    lines: list[str] = []

    def stop_at_validation(line: str) -> None:
        lines.append(line)
        if "validation" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_uci(data, [0], tmp_path / "b", settings, log=stop_at_validation)
    assert any("resumed at epoch 3/6" in line for line in lines)

    # 3. resumed once more: training is not repeated, results equal the straight run
    lines.clear()
    resumed = run_uci(data, [0], tmp_path / "b", settings, log=lines.append)
    assert any("resumed at epoch 6/6" in line for line in lines)
    assert not (folder / "state-grid.pt").exists()
    for key in ("rmse", "ll", "val_ll", "p", "tau"):
        assert resumed[0][key] == straight[0][key]
    # finished splits are read back, not retrained
    mtime = (folder / "split_0.json").stat().st_mtime_ns
    assert run_uci(data, [0], tmp_path / "b", settings)[0]["ll"] == straight[0]["ll"]
    assert (folder / "split_0.json").stat().st_mtime_ns == mtime


def test_results_of_other_settings_are_not_mixed(uci_dir: Path, tmp_path: Path) -> None:
    data = load_uci(uci_dir, "yacht")
    run_uci(data, [0], tmp_path, ProtocolSettings(epochs=2, samples=8))
    with pytest.raises(
        ValueError,
        match=r"run_uci: expected split_0.json to come from the "
        r"settings .*Use another --out folder",
    ):
        run_uci(data, [0], tmp_path, ProtocolSettings(epochs=2, samples=16))
    with pytest.raises(
        ValueError,
        match=r"run_uci: expected split numbers in \[0, 20\), but "
        r"got \[20\]",
    ):
        run_uci(data, [20], tmp_path, ProtocolSettings(epochs=2, samples=8))


def test_bad_data_leaves_no_results(uci_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(uci_dir / "yacht", tmp_path / "data" / "yacht")
    (tmp_path / "data" / "yacht" / "data.txt").write_text("1 2 3\n4 5\n")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"expected 3 columns on every line of data.txt"):
        bench_uci.main(["--quick", "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    assert not out.exists()
    with pytest.raises(ValueError, match=r"bench uci: expected datasets among"):
        bench_uci.main(["--datasets", "mnist", "--data-dir", str(uci_dir), "--out", str(out)])
    with pytest.raises(FileNotFoundError, match=r"load_uci: expected a dataset folder"):
        bench_uci.main(
            ["--datasets", "energy", "--data-dir", str(tmp_path / "data"), "--out", str(out)]
        )
    assert not out.exists()


def test_summary_accumulates_datasets(uci_dir: Path, tmp_path: Path) -> None:
    common = [
        "--data-dir",
        str(uci_dir),
        "--out",
        str(tmp_path),
        "--splits",
        "1",
        "--epochs",
        "2",
        "--samples",
        "8",
    ]
    assert bench_uci.main(["--datasets", "yacht", *common]) == 0
    assert bench_uci.main(["--datasets", "energy", *common]) == 0
    datasets = json.loads((tmp_path / "uci.json").read_text())["datasets"]
    assert sorted(datasets) == ["energy", "yacht"]
    assert datasets["energy"]["complete"] is False and datasets["energy"]["splits"] == 1


def test_two_standard_error_verdicts() -> None:
    # yacht grid search: RMSE 0.666275 +- 0.048602, LL -1.250148 +- 0.015297
    def verdict(rmse: float, ll: float) -> tuple[bool, bool]:
        s = bench_uci.compare(
            "yacht", {"rmse": {"mean": rmse, "se": 0.0}, "ll": {"mean": ll, "se": 0.0}}
        )
        return s["rmse_within_2se"], s["ll_within_2se"]

    assert verdict(0.7634, -1.2807) == (True, True)  # just inside both margins
    assert verdict(0.7636, -1.2809) == (False, False)  # just outside
    assert verdict(0.5, -1.0) == (True, True)  # better is always fine

"""User-facing errors of the UCI engine and its benches (load_uci, mc_regression, bench)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dropkit.bench import sweep as bench_sweep
from dropkit.bench import uci as bench_uci
from dropkit.bench.uci.batched import BatchedMLP
from dropkit.bench.uci.data import load_uci
from dropkit.bench.uci.mc import mc_regression


@pytest.fixture
def yacht(uci_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(uci_dir / "yacht", tmp_path / "yacht", ignore=shutil.ignore_patterns("ref*"))
    return tmp_path / "yacht"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("index_target.txt", "2\n", r"expected one target column not among the features"),
        ("index_target.txt", "", r"expected at least one number in index_target.txt"),
        ("n_splits.txt", "2 3\n", r"expected one positive integer in n_splits.txt"),
        ("n_hidden.txt", "fifty\n", r"expected numbers in n_hidden.txt, but got 'fifty'"),
        ("dropout_rates.txt", "0.1 1.5\n", r"expected dropout rates in \[0, 1\) and tau"),
        ("data.txt", "\n\n", r"expected data rows in data.txt, but got an empty file"),
    ],
)
def test_malformed_files(yacht: Path, name: str, text: str, message: str) -> None:
    (yacht / name).write_text(text)
    with pytest.raises(ValueError, match=r"load_uci: " + message):
        load_uci(yacht.parent, "yacht")


def test_overlapping_split(yacht: Path) -> None:
    (yacht / "index_test_2.txt").write_text((yacht / "index_train_2.txt").read_text().split()[0])
    with pytest.raises(ValueError, match=r"expected disjoint train and test rows in split 2"):
        load_uci(yacht.parent, "yacht")


def test_bench_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uci_dir: Path) -> None:
    monkeypatch.setattr(bench_uci, "_default_data_dir", lambda: None)
    with pytest.raises(ValueError, match=r"bench uci: expected --data-dir or \$DROPKIT_UCI_DIR"):
        bench_uci.main(["--quick", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match=r"bench sweep: expected --data-dir or \$DROPKIT_UCI_DIR"):
        bench_sweep.main(["--quick"])
    with pytest.raises(ValueError, match=r"bench uci: expected --splits >= 1, but got 0"):
        bench_uci.main(["--splits", "0", "--data-dir", str(uci_dir), "--out", str(tmp_path)])


def test_mc_regression_lengths() -> None:
    x, y = torch.randn(8, 2), torch.randn(8)
    net = BatchedMLP([x], [y], p=[0.1], reg=[0.0], seeds=[0], n_hidden=4)
    with pytest.raises(
        ValueError, match=r"mc_regression: expected one x, y, y_mean, y_std and tau"
    ):
        mc_regression(net, [x, x], [np.zeros(8)], y_mean=[0], y_std=[1], tau=[1], samples=4)


def test_default_data_dir_finds_the_shared_folder(
    monkeypatch: pytest.MonkeyPatch, shared_dir: Path
) -> None:
    # the help promises ../shared/data/uci beside a checkout: found from the package's own path
    monkeypatch.delenv("DROPKIT_UCI_DIR", raising=False)
    found = bench_uci._default_data_dir()
    # the same folder, whichever way a symlink (a CI clone's ../shared) reaches it
    assert found is not None and found.resolve() == (shared_dir / "data" / "uci").resolve()
    monkeypatch.setenv("DROPKIT_UCI_DIR", "/elsewhere/uci")
    assert bench_uci._default_data_dir() == Path("/elsewhere/uci")

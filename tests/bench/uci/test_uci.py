from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dropkit.bench.uci.batched import BatchedMLP
from dropkit.bench.uci.data import fit_validation, load_uci, mean_se, regularization, standardize
from dropkit.bench.uci.mc import mc_regression, reference_samples
from dropkit.bench.uci.reference import train_one
from dropkit.metrics import mc_log_likelihood


def _ll_points(samples: np.ndarray, y: np.ndarray, tau: float) -> np.ndarray:
    """Per-point MC log-likelihood through dropkit.metrics, one point at a time ``(N,)``."""
    s, t = torch.from_numpy(samples), torch.from_numpy(np.asarray(y, np.float64))
    return np.array(
        [mc_log_likelihood(s[:, j : j + 1], t[j : j + 1], tau) for j in range(t.numel())]
    )


@pytest.fixture
def yacht_copy(uci_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(uci_dir / "yacht", tmp_path / "yacht", ignore=shutil.ignore_patterns("ref*"))
    return tmp_path


def test_load_real_yacht(uci_dir: Path) -> None:
    data = load_uci(uci_dir, "yacht")
    assert data.x.shape == (308, 6) and data.y.shape == (308,)
    assert data.n_splits == 20 and data.n_hidden == 50 and data.n_epochs == 40
    assert (data.train[0].size, data.test[0].size) == (277, 31)
    assert data.grid[:4] == [(0.005, 0.25), (0.005, 0.5), (0.005, 0.75), (0.01, 0.25)]


def test_missing_folder_and_files(yacht_copy: Path) -> None:
    with pytest.raises(
        FileNotFoundError,
        match=r"load_uci: expected a dataset folder .*Known "
        r"datasets in .*: yacht",
    ):
        load_uci(yacht_copy, "boston")
    (yacht_copy / "yacht" / "index_test_7.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"expected the file .*index_test_7.txt"):
        load_uci(yacht_copy, "yacht")


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number] = text
    path.write_text("\n".join(lines) + "\n")


def test_wrong_column_count(yacht_copy: Path) -> None:
    _edit_line(yacht_copy / "yacht" / "data.txt", 4, "1 2 3")
    with pytest.raises(
        ValueError,
        match=r"expected 7 columns on every line of data.txt, but "
        r"got 3 on line 5",
    ):
        load_uci(yacht_copy, "yacht")


def test_nan_row(yacht_copy: Path) -> None:
    _edit_line(yacht_copy / "yacht" / "data.txt", 9, "1 2 3 nan 5 6 7")
    with pytest.raises(ValueError, match=r"expected finite values in data.txt.*on line 10"):
        load_uci(yacht_copy, "yacht")


def test_non_numeric_row(yacht_copy: Path) -> None:
    _edit_line(yacht_copy / "yacht" / "data.txt", 0, "1 2 x 4 5 6 7")
    with pytest.raises(ValueError, match=r"expected whitespace-separated floats in data.txt"):
        load_uci(yacht_copy, "yacht")


def test_split_index_out_of_range(yacht_copy: Path) -> None:
    _edit_line(yacht_copy / "yacht" / "index_train_3.txt", 0, "308")
    with pytest.raises(
        ValueError,
        match=r"expected row indices in \[0, 308\) in "
        r"index_train_3.txt, but got 308",
    ):
        load_uci(yacht_copy, "yacht")


def test_split_index_not_integer_or_duplicate(yacht_copy: Path) -> None:
    path = yacht_copy / "yacht" / "index_test_0.txt"
    original = path.read_text()
    _edit_line(path, 0, "3.5")
    with pytest.raises(ValueError, match=r"expected integers in index_test_0.txt, but got '3.5'"):
        load_uci(yacht_copy, "yacht")
    path.write_text(original)
    first = original.split()[0]
    path.write_text(original + f"\n{first}\n")
    with pytest.raises(ValueError, match=r"expected distinct row indices in index_test_0.txt"):
        load_uci(yacht_copy, "yacht")


def test_feature_column_out_of_range(yacht_copy: Path) -> None:
    (yacht_copy / "yacht" / "index_features.txt").write_text("0 1 9\n")
    with pytest.raises(ValueError, match=r"expected column indices in \[0, 7\)"):
        load_uci(yacht_copy, "yacht")


def test_fit_validation_is_first_80_percent_in_file_order() -> None:
    rows = np.array([9, 3, 7, 1, 5, 2, 8, 0, 6, 4, 11])
    fit, val = fit_validation(rows)
    assert fit.tolist() == [9, 3, 7, 1, 5, 2, 8, 0]  # int(0.8 * 11) = 8
    assert val.tolist() == [6, 4, 11]


def test_standardize_uses_ddof0_and_maps_zero_std_to_one() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0], [8.0, 5.0]])
    mean, std = standardize(x)
    np.testing.assert_allclose(mean, [4.0, 5.0])
    np.testing.assert_allclose(std[0], math.sqrt(((1 - 4) ** 2 + (3 - 4) ** 2 + 16) / 3))
    assert std[1] == 1.0


def test_regularization_formula() -> None:
    assert regularization(0.05, 0.5, 221) == pytest.approx(1e-4 * 0.95 / (2 * 221 * 0.5))


def test_ll_formula_matches_naive_mean_of_densities() -> None:
    # the protocol's test log-likelihood is dropkit.metrics.mc_log_likelihood (logsumexp form);
    # rtol 1e-12 ~ 4500 float64 eps: a 50-term logsumexp, a log and a 7-term mean, each a few eps
    rng = np.random.default_rng(0)
    y, tau = rng.normal(size=7), 0.7
    samples = rng.normal(size=(50, 7)) * 2
    density = np.sqrt(tau / (2 * np.pi)) * np.exp(-0.5 * tau * (y - samples) ** 2)
    naive = np.log(density.mean(axis=0))  # log of the MC predictive density
    np.testing.assert_allclose(_ll_points(samples, y, tau), naive, rtol=1e-12)
    got = mc_log_likelihood(torch.from_numpy(samples), torch.from_numpy(y), tau)
    assert got == pytest.approx(naive.mean(), rel=1e-12)
    # far-off points underflow the naive form but not the log-sum-exp one
    far = _ll_points(np.zeros((4, 1)), np.array([1e3]), 2.0)
    assert far[0] == pytest.approx(-1e6 - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(2.0))


def test_mean_se() -> None:
    values = [1.0, 2.0, 4.0, 5.0]
    mean, se = mean_se(values)
    assert mean == 3.0 and se == pytest.approx(np.std(values) / 2)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("budget", [1 << 23, 200])  # 200 words: one model per group, 4 passes
def test_mc_regression_matches_naive_reference(
    generator: torch.Generator, backend: str, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dropkit.bench.uci.mc._CHUNK_WORDS", budget)
    dt = torch.float64
    xs = [torch.randn(40, 3, generator=generator, dtype=dt) for _ in range(2)]
    ys = [x[:, 0] for x in xs]
    xe = [torch.randn(6, 3, generator=generator, dtype=dt), torch.randn(4, 3, dtype=dt)]
    ye = [np.linspace(-1, 1, 6), np.array([0.5, 1.0, 2.0, 3.0])]
    p, reg, seeds, tau, mean, std = [0.1, 0.3], [1e-3, 1e-3], [4, 5], [0.5, 2.0], [1, 2], [2, 0.5]
    net = BatchedMLP(
        xs, ys, p=p, reg=reg, seeds=seeds, n_hidden=8, batch_size=16, dtype=dt, backend=backend
    )
    net.train(2)
    got = mc_regression(net, xe, ye, y_mean=mean, y_std=std, tau=tau, samples=37)
    for i in range(2):
        model, stream = train_one(
            xs[i],
            ys[i],
            p=p[i],
            reg=reg[i],
            seed=seeds[i],
            epochs=2,
            n_hidden=8,
            batch_size=16,
            dtype=dt,
        )
        s = reference_samples(model, stream, xe[i], p=p[i], samples=37).numpy() * std[i] + mean[i]
        np.testing.assert_allclose(got.ll_points[i], _ll_points(s, ye[i], tau[i]), rtol=1e-10)
        np.testing.assert_allclose(got.mean[i], s.mean(0), rtol=1e-10)
        rmse = math.sqrt(np.mean((ye[i] - s.mean(0)) ** 2))
        assert got.rmse[i] == pytest.approx(rmse, rel=1e-10)

from __future__ import annotations

import math

import pytest
import torch

from dropkit import metrics
from dropkit.uncertainty.result import MCResult


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_rmse_and_gaussian_nll_hand_and_reference(generator):
    assert metrics.rmse([1.0, 2.0], [1.0, 4.0]) == pytest.approx(math.sqrt(2))
    # N(0, 1) at 0: 0.5 log(2 pi)
    assert metrics.gaussian_nll([0.0], [1.0], [0.0]) == pytest.approx(0.5 * math.log(2 * math.pi))
    m = torch.randn(20, 2, generator=generator, dtype=torch.float64)
    v = torch.rand(20, 2, generator=generator, dtype=torch.float64) + 0.1
    t = torch.randn(20, 2, generator=generator, dtype=torch.float64)
    naive = 0.0
    for mi, vi, ti in zip(m.flatten().tolist(), v.flatten().tolist(), t.flatten().tolist()):
        naive += 0.5 * math.log(2 * math.pi * vi) + (ti - mi) ** 2 / (2 * vi)
    assert metrics.gaussian_nll(m, v, t) == pytest.approx(naive / 40, abs=1e-12)
    # a scalar variance broadcasts
    assert metrics.gaussian_nll(m, 0.5, t) == pytest.approx(
        metrics.gaussian_nll(m, torch.full_like(m, 0.5), t)
    )


def test_mc_log_likelihood_matches_naive_mixture(generator):
    s, n, d, tau = 5, 7, 2, 3.0
    x = torch.randn(s, n, d, generator=generator, dtype=torch.float64)
    y = torch.randn(n, d, generator=generator, dtype=torch.float64)
    total = 0.0
    for i in range(n):
        dens = 0.0
        for k in range(s):
            sq = sum((y[i, j].item() - x[k, i, j].item()) ** 2 for j in range(d))
            dens += (tau / (2 * math.pi)) ** (d / 2) * math.exp(-0.5 * tau * sq)
        total += math.log(dens / s)
    assert metrics.mc_log_likelihood(x, y, tau) == pytest.approx(total / n, abs=1e-12)
    # agrees with MCResult's per-input log-likelihood
    r = MCResult.from_samples(x, task="regression", tau=tau, target=y)
    assert r.log_likelihood.mean().item() == pytest.approx(total / n, abs=1e-12)
    # 1-D targets (N,) with samples (S, N)
    x1, y1 = x[..., 0], y[:, 0]
    naive = (
        sum(
            math.log(
                sum(
                    math.sqrt(tau / (2 * math.pi))
                    * math.exp(-0.5 * tau * (y1[i] - x1[k, i]).item() ** 2)
                    for k in range(s)
                )
                / s
            )
            for i in range(n)
        )
        / n
    )
    assert metrics.mc_log_likelihood(x1, y1, tau) == pytest.approx(naive, abs=1e-12)


def test_interval_coverage_and_calibration_curve(generator):
    m = torch.zeros(8, dtype=torch.float64)
    sd = torch.ones(8, dtype=torch.float64)
    t = torch.tensor([-3.0, -1.96, -1.0, 0.0, 0.5, 1.9599, 2.0, 5.0], dtype=torch.float64)
    # z(0.95) = 1.95996398454005...; -1.96, 2, -3, 5 are outside, 1.9599 inside
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.975)
    naive = sum(-z <= v <= z for v in t.tolist()) / 8
    assert naive == 4 / 8
    assert metrics.interval_coverage(m, sd, t) == 4 / 8
    assert metrics.interval_coverage(m, sd, t, level=0.6827) == 3 / 8  # z ~ 1.0000: -1, 0, 0.5
    curve = metrics.regression_calibration_curve(m, sd, t, n_levels=3)
    assert curve.expected.tolist() == [0.25, 0.5, 0.75]
    cdf = [_phi(v) for v in t.tolist()]
    obs = [sum(c <= q for c in cdf) / 8 for q in (0.25, 0.5, 0.75)]
    assert curve.observed.tolist() == pytest.approx(obs)
    assert curve.error == pytest.approx(
        sum((o - q) ** 2 for o, q in zip(obs, (0.25, 0.5, 0.75))) / 3
    )


def test_regression_bad_input_raises():
    with pytest.raises(
        ValueError, match=r"^rmse: expected target with the shape of mean \(2,\), but got \(3,\)"
    ):
        metrics.rmse([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(
        ValueError,
        match=r"^gaussian_nll: expected var > 0, but got minimum 0\. A predictive spread",
    ):
        metrics.gaussian_nll([1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match=r"^mc_log_likelihood: expected tau > 0, but got -1\.0"):
        metrics.mc_log_likelihood(torch.zeros(2, 3), torch.zeros(3), -1.0)
    with pytest.raises(
        ValueError,
        match=r"^mc_log_likelihood: expected samples \(S, \*target.shape\) = \(S, 3\), "
        r"but got \(3,\)",
    ):
        metrics.mc_log_likelihood(torch.zeros(3), torch.zeros(3), 1.0)
    with pytest.raises(
        ValueError, match=r"^interval_coverage: expected level in \(0, 1\), but got 1\.5"
    ):
        metrics.interval_coverage([0.0], [1.0], [0.0], level=1.5)
    with pytest.raises(ValueError, match=r"^rmse: expected finite mean"):
        metrics.rmse([float("nan")], [0.0])

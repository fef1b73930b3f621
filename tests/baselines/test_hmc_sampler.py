"""The vectorised multi-chain sampler against targets whose moments are known exactly.

Tolerances are 5 Monte Carlo standard errors, each from the draws' own
effective sample size (pyro's estimator), so a check fails when the sampler is
wrong, not by bad luck (p < 1e-6 per check).
"""

from __future__ import annotations

import math

import pytest
import torch

from dropkit.baselines._hmc_diagnostics import ess
from dropkit.baselines._hmc_sampler import (
    DIVERGENCE,
    sample_chains,
    van_der_corput,
    window_ends,
)

pytest.importorskip("pyro")  # the ESS estimator


def gaussian(cov: torch.Tensor):
    """Energy and gradient of N(0, cov) for a batch of chains, written out."""
    prec = torch.linalg.inv(cov)

    def fn(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = theta @ prec
        return 0.5 * (g * theta).sum(1), g

    return fn


def test_van_der_corput_points_are_exact_binary_fractions():
    assert [van_der_corput(i) for i in range(7)] == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    assert all(0.0 < van_der_corput(i) < 1.0 for i in range(1000))


def test_window_schedule():
    # 15% start buffer, windows of 25, 50, 100, ... and the last stretched to the 10% end buffer
    assert window_ends(1000) == [175, 225, 325, 900]
    assert window_ends(400) == [85, 135, 360]
    assert window_ends(40) == [36]  # one window: 6 to 36
    assert window_ends(10) == [] and window_ends(0) == []  # under 10 iterations: step size only
    for warmup in range(60, 3000, 37):
        ends = window_ends(warmup)
        assert ends == sorted(set(ends)) and ends[-1] == warmup - int(0.1 * warmup)


def test_anisotropic_gaussian_moments_and_adapted_metric(generator):
    # scales over four orders of magnitude: the diagonal metric has to learn them
    sd = torch.tensor([0.01, 0.1, 1.0, 5.0], dtype=torch.float64)
    k, samples = 8, 400
    run = sample_chains(
        gaussian(torch.diag(sd**2)),
        torch.randn(k, 4, generator=generator, dtype=torch.float64) * sd,
        warmup=300,
        samples=samples,
        generator=torch.Generator().manual_seed(1),
    )
    draws = run.draws  # (K, S, 4)
    n_eff = ess(draws)
    flat = draws.reshape(-1, 4)
    assert (flat.mean(0).abs() < 5 * sd / n_eff.sqrt()).all()
    # variance of a Gaussian sample variance: 2 var^2 / n_eff
    assert ((flat.var(0) - sd**2).abs() < 5 * sd**2 * (2 / n_eff).sqrt()).all()
    # the metric learned the scales (its estimate is itself a sample variance)
    ratio = run.inverse_mass / sd**2
    assert bool(((ratio > 0.5) & (ratio < 2.0)).all()), ratio
    assert run.divergences == [0] * k and len(run.step_size) == k
    assert 0.6 < sum(run.accept_rate) / k < 0.97
    # every iteration's steps are at least one and at most max_steps
    assert 1 <= run.mean_steps <= 1023


def test_correlated_gaussian_covariance(generator):
    # correlation 0.95 is not axis-aligned: the diagonal metric cannot remove it,
    # the Metropolis correction keeps the answer exact anyway
    cov = torch.tensor([[1.0, 0.95], [0.95, 1.0]], dtype=torch.float64)
    run = sample_chains(
        gaussian(cov),
        torch.randn(6, 2, generator=generator, dtype=torch.float64),
        warmup=200,
        samples=500,
        generator=torch.Generator().manual_seed(2),
    )
    flat = run.draws.reshape(-1, 2)
    n_eff = float(ess(run.draws).min())
    emp = torch.cov(flat.T, correction=0)
    # SE of a covariance entry: sqrt((s_ii s_jj + s_ij^2) / n_eff)
    se = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n_eff).sqrt()
    assert ((emp - cov).abs() < 5 * se).all()


def test_hard_wall_diverges_and_never_leaves_the_support(generator):
    # standard normal truncated to (-1, 1): energy is infinite outside
    def wall(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inside = theta.abs().lt(1.0).all(1)
        u = torch.where(inside, 0.5 * (theta**2).sum(1), torch.full_like(theta[:, 0], math.inf))
        return u, theta.clone()

    run = sample_chains(
        wall,
        torch.zeros(4, 1, dtype=torch.float64),
        warmup=100,
        samples=1500,
        generator=torch.Generator().manual_seed(3),
        trajectory_length=3.0,
    )
    flat = run.draws.reshape(-1)
    assert bool((flat.abs() < 1.0).all())
    assert sum(run.divergences) > 0  # trajectories that cross the wall are divergent
    # variance of N(0, 1) truncated to (-1, 1): 1 - 2 phi(1) / (2 Phi(1) - 1)
    phi = math.exp(-0.5) / math.sqrt(2 * math.pi)
    mass = math.erf(1 / math.sqrt(2))
    exact = 1 - 2 * phi / mass
    n_eff = float(ess(run.draws.reshape(4, -1)))
    fourth = float((flat**4).mean())  # SE of a variance: sqrt((m4 - var^2) / n_eff)
    assert abs(float(flat.var()) - exact) < 5 * math.sqrt((fourth - exact**2) / n_eff)
    assert DIVERGENCE == 1000.0


def test_same_generator_same_draws_and_thinning(generator):
    fn = gaussian(torch.eye(3, dtype=torch.float64))
    start = torch.randn(3, 3, generator=generator, dtype=torch.float64)

    def run(seed: int, thin: int):
        return sample_chains(
            fn,
            start,
            warmup=30,
            samples=20,
            thin=thin,
            generator=torch.Generator().manual_seed(seed),
        )

    a, b = run(7, 1), run(7, 1)
    # same seed, same ops on the same shapes: identical draws
    assert torch.equal(a.draws, b.draws)
    assert not torch.equal(a.draws, run(8, 1).draws)
    thinned = run(7, 3)
    assert thinned.draws.shape == (3, 20, 3)
    # thin=3 keeps iterations 3, 6, ...: the same chain as thin=1 until warm-up ends,
    # then every third state of a run three times as long
    longer = sample_chains(
        fn, start, warmup=30, samples=60, generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(thinned.draws, longer.draws[:, 2::3])
    # gradients counted per chain: start, step-size searches, and 3 chains per leapfrog step
    assert a.gradient_evaluations >= 3 * (30 + 20)

"""The collapsed posterior (last layer integrated out) against the plain one.

The references are computed from the plain :class:`Posterior`'s energy only: it
is exactly quadratic in the last layer, so its Hessian there is the
conditional precision ``A`` and one Newton step from any point lands on the
conditional mean. Float64 throughout; the tolerances are a few hundred ulps of
the energies' magnitude (sums of ~100 terms of order 10).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from dropkit.baselines import HMC
from dropkit.baselines._hmc_collapsed import CollapsedPosterior, linear_last
from dropkit.baselines._hmc_diagnostics import ess
from dropkit.baselines._hmc_posterior import Posterior

pytest.importorskip("pyro")


def net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Dropout(0.2), nn.Linear(4, 2)).double()
    return model.eval()  # as HMC holds it while sampling


def data(generator: torch.Generator, n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    y = torch.stack([torch.sin(x[:, 0]), x[:, 1] - x[:, 2]], 1)
    return x, y + 0.2 * torch.randn(n, 2, generator=generator, dtype=torch.float64)


def conditional(plain: Posterior, body: torch.Tensor, log_tau: torch.Tensor):
    """Precision ``A`` and mean of the last layer given the body, from the plain energy alone."""
    p_last = plain.num_parameters - body.numel()

    def energy(w: torch.Tensor) -> torch.Tensor:
        return plain.energy(torch.cat([body, w, log_tau])[None])[0]

    w0 = torch.zeros(p_last, dtype=torch.float64)
    hess = torch.autograd.functional.hessian(energy, w0)
    (grad,) = torch.autograd.grad(energy(w0.requires_grad_(True)), w0)
    return hess, -torch.linalg.solve(hess, grad), energy


def test_linear_last_finds_the_split_or_says_none():
    body, last = linear_last(net())
    assert list(body._modules) == ["0", "1", "2"] and last.out_features == 2  # dropout in body
    assert [n for n, _ in body.named_parameters()] == ["0.weight", "0.bias"]
    assert linear_last(nn.Linear(3, 1)) is None  # no body
    assert linear_last(nn.Sequential(nn.Linear(3, 1))) is None
    assert linear_last(nn.Sequential(nn.Linear(3, 4), nn.ReLU())) is None  # ends in ReLU

    class MyLinear(nn.Linear):
        pass

    assert linear_last(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), MyLinear(4, 1))) is None
    tied = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    tied[2].weight = tied[0].weight
    assert linear_last(tied) is None


@pytest.mark.parametrize("noise_std", [None, 0.3])
def test_collapsed_energy_is_the_integral_over_the_last_layer(generator, noise_std):
    model = net()
    x, y = data(generator)
    plain = Posterior(model, "regression", 1.3, noise_std)
    coll = CollapsedPosterior(model, 1.3, noise_std)
    for post in (plain, coll):
        post.bind(x, y)
    n_last = coll.num_parameters - coll.body_size
    values = []
    for trial in range(3):
        body = torch.randn(coll.body_size, generator=generator, dtype=torch.float64)
        log_tau = (
            torch.tensor([0.5 * trial - 0.3], dtype=torch.float64)
            if noise_std is None
            else torch.zeros(0, dtype=torch.float64)
        )
        hess, mean, energy = conditional(plain, body, log_tau)
        # exp(-U) integrated over the last layer: exp(-U(mean)) (2 pi)^(F/2) |A|^(-1/2)
        logdet = torch.linalg.slogdet(hess).logabsdet
        integral = float(energy(mean)) + 0.5 * float(logdet) - 0.5 * n_last * math.log(2 * math.pi)
        got = float(coll.energy(torch.cat([body, log_tau])[None])[0])
        values.append(got - integral)
    # the collapsed energy drops one constant (the prior's normaliser): the same every time
    scale = max(abs(v) for v in values) + 1.0
    assert max(values) - min(values) < 1e-9 * scale, values


def test_gradients_are_finite_and_match_finite_differences(generator):
    coll = CollapsedPosterior(net(), 1.0, None)
    coll.bind(*data(generator))
    theta = torch.cat([0.5 * torch.randn(coll.body_size, generator=generator), torch.tensor([1.0])])
    theta = theta.double()[None].repeat(2, 1)
    theta[1] += 0.1
    u, g = coll.energy_and_grad(theta)
    assert torch.isfinite(g).all() and g.shape == theta.shape
    h = 1e-6
    for j in (0, 5, coll.dim - 1):  # a first-layer weight, a bias, log tau
        e = torch.zeros_like(theta)
        e[:, j] = h
        fd = (coll.energy(theta + e) - coll.energy(theta - e)) / (2 * h)
        # central differences: O(h^2) truncation plus eps * |U| / h rounding
        assert torch.allclose(g[:, j], fd, rtol=1e-5, atol=1e-7 * float(u.abs().max()) / h)


def test_completed_last_layer_is_the_exact_conditional(generator):
    model = net()
    x, y = data(generator)
    plain = Posterior(model, "regression", 1.0, 0.3)
    coll = CollapsedPosterior(model, 1.0, 0.3)
    for post in (plain, coll):
        post.bind(x, y)
    body = torch.randn(coll.body_size, generator=generator, dtype=torch.float64)
    hess, mean, _ = conditional(plain, body, torch.zeros(0, dtype=torch.float64))
    n = 20_000
    full = coll.complete(body.expand(1, n, -1).clone(), torch.Generator().manual_seed(4))
    assert full.shape == (1, n, plain.num_parameters)
    assert torch.equal(full[0, :, : coll.body_size], body.expand(n, -1))
    w = full[0, :, coll.body_size :]
    cov = torch.linalg.inv(hess)
    sd = cov.diagonal().sqrt()
    # iid Gaussian draws: mean within 5 SE, covariance entries within 5 SE
    assert ((w.mean(0) - mean).abs() < 5 * sd / math.sqrt(n)).all()
    emp = torch.cov(w.T, correction=0)
    se = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((emp - cov).abs() < 5 * se).all()


def test_collapsed_and_plain_hmc_agree_on_a_network(generator):
    x, y = data(generator, 40)
    y = y[:, :1]
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    xt = torch.tensor([[0.0, 0.0, 0.0], [1.5, -1.0, 0.5]], dtype=torch.float64)
    runs = {}
    for marginalize in (True, False):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"HMC\.fit: expected", UserWarning)  # weights swap
            hmc = HMC(model, samples=300, warmup=200, chains=4, seed=2, marginalize=marginalize)
            res = hmc.fit(x, y).predict(xt, keep_samples=True)
        f = res.samples[..., 0].reshape(4, -1, 2)
        runs[marginalize] = (res.mean[:, 0], f.var((0, 1)), ess(f), hmc)
    (m1, v1, e1, h1), (m0, v0, e0, h0) = runs[True], runs[False]
    assert h1.posterior.dim == 3 * 3 + 3 + 1 and h0.posterior.dim == 16 + 1
    assert h1.draws.shape == h0.draws.shape == (4, 300, 17)
    # two independent Monte Carlo estimates of one posterior mean: 5 SE of the difference
    se = (v1 / e1 + v0 / e0).sqrt()
    assert ((m1 - m0).abs() < 5 * se).all(), (m1, m0, se)


def test_marginalize_errors_name_the_fix():
    with pytest.raises(
        TypeError, match=r"^HMC: expected marginalize to be True or False, but got 'yes'"
    ):
        HMC(net(), marginalize="yes")
    with pytest.raises(
        ValueError, match=r"expected a regression nn.Sequential ending in an nn.Linear with "
    ):
        HMC(nn.Linear(3, 1), marginalize=True)
    with pytest.raises(ValueError, match=r"likelihood='classification'"):
        HMC(net(), "classification", marginalize=True)
    assert HMC(net()).marginalize is False  # the default samples every weight
    assert HMC(net(), marginalize=True).marginalize is True

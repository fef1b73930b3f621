"""HMC against answers known exactly: a conjugate Gaussian posterior and a 2-D grid.

Monte Carlo tolerances are 5 standard errors, with the standard error computed
from the chains' own effective sample size (pyro's estimator), so each check
fails only when the sampler is wrong, not by bad luck (p < 1e-6 per check).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from dropkit.baselines import HMC, compare_uncertainty
from dropkit.baselines._hmc_diagnostics import ess, split_rhat

pytest.importorskip("pyro")


def snapshot(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        [p.requires_grad for p in model.parameters()],
    )


def same(model: nn.Module, before) -> bool:
    flags, state, grads = before
    now = model.state_dict()
    return (
        flags == [m.training for m in model.modules()]
        and all(torch.equal(now[k], v) for k, v in state.items())
        and grads == [p.requires_grad for p in model.parameters()]
    )


# ---------------------------------------------------------------- conjugate


SAMPLERS = pytest.mark.parametrize("sampler", ["hmc", "nuts"])


@pytest.mark.parametrize(("sampler", "collapsed"), [("hmc", False), ("nuts", False), ("hmc", True)])
def test_conjugate_linear_regression_predictive(generator, sampler, collapsed):
    # collapsed: a parameter-free body before the linear layer, so every draw of the
    # weights comes from the exact conditional (nothing is left for HMC to sample)
    n, noise, prior = 40, 0.5, 1.0
    x = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -0.5], dtype=torch.float64) + 0.3
    y = y + noise * torch.randn(n, generator=generator, dtype=torch.float64)
    model = nn.Sequential(nn.Identity(), nn.Linear(2, 1)) if collapsed else nn.Linear(2, 1)
    model = model.double()
    before = snapshot(model)
    hmc = HMC(
        model,
        noise_std=noise,
        prior_std=prior,
        samples=200,
        warmup=100,
        chains=2,
        seed=3,
        sampler=sampler,
        max_steps=31,
        marginalize=collapsed,
    )
    hmc.fit(x, y)
    assert same(model, before) and hmc.marginalize is collapsed
    # exact posterior of (w1, w2, b): precision X'X / s^2 + I / a^2
    phi = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    prec = phi.T @ phi / noise**2 + torch.eye(3, dtype=torch.float64) / prior**2
    cov = torch.linalg.inv(prec)
    mu = cov @ phi.T @ y / noise**2
    xt = torch.tensor([[0.0, 0.0], [1.5, -1.0], [-2.0, 0.5]], dtype=torch.float64)
    phit = torch.cat([xt, torch.ones(3, 1, dtype=torch.float64)], 1)
    mean_exact = phit @ mu
    cov_exact = phit @ cov @ phit.T  # (3, 3) predictive covariance of f(x*)
    res = hmc.predict(xt, keep_samples=True)
    f = res.samples[..., 0]  # (S, 3)
    k = hmc.chains
    n_eff = ess(f.reshape(k, -1, 3))  # per test point
    var = torch.diagonal(cov_exact)
    se_mean = (var / n_eff).sqrt()
    assert ((res.mean[:, 0] - mean_exact).abs() < 5 * se_mean).all()
    # sample variance of a Gaussian: SE = var * sqrt(2 / n_eff)
    se_var = var * (2 / n_eff).sqrt()
    assert ((res.epistemic_var[:, 0] - var).abs() < 5 * se_var).all()
    # off-diagonal covariance: SE^2 = (s_ii s_jj + s_ij^2) / n_eff
    emp = torch.cov(f.T, correction=0)
    i, j = 1, 2
    se_cov = ((var[i] * var[j] + cov_exact[i, j] ** 2) / n_eff.min()).sqrt()
    assert abs(emp[i, j] - cov_exact[i, j]) < 5 * se_cov
    # the known noise is the aleatoric part, exactly (a mean of equal float64 values)
    assert torch.equal(res.aleatoric_var, torch.full_like(res.aleatoric_var, noise**2))
    assert res.extras["forward_passes"] == 400 and res.extras["method"] == "hmc"


@SAMPLERS
def test_sampled_noise_matches_residual_variance(generator, sampler):
    n, noise = 200, 0.5
    x = torch.randn(n, 1, generator=generator)
    y = 2 * x[:, 0] + noise * torch.randn(n, generator=generator)
    hmc = HMC(
        nn.Linear(1, 1), samples=100, warmup=100, chains=2, seed=1, sampler=sampler, max_steps=31
    )
    hmc.fit(x, y)
    res = hmc.predict(x[:3])
    # posterior of the noise variance concentrates at the least-squares residual
    # variance with sd ~ s^2 sqrt(2 / n); 5 sd plus 5 Monte Carlo SEs
    phi = torch.cat([x, torch.ones(n, 1)], 1).double()
    beta = torch.linalg.lstsq(phi, y.double()[:, None]).solution
    s2 = float(((phi @ beta)[:, 0] - y.double()).pow(2).mean())
    nv = hmc.noise_var
    sd = s2 * math.sqrt(2 / n)
    mc_se = float(nv.std()) / math.sqrt(float(ess(nv.reshape(2, -1))))
    assert abs(float(res.aleatoric_var[0]) - s2) < 5 * sd + 5 * mc_se
    assert torch.allclose(res.aleatoric_var, nv.mean().expand(3, 1).double())


# ---------------------------------------------------------------- logistic


class Logistic(nn.Module):
    """p(y=1 | x) = sigmoid(w . x) as two logits [0, w . x]: a 2-D posterior."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.w
        return torch.stack([torch.zeros_like(z), z], -1)


@SAMPLERS
def test_logistic_regression_against_grid(generator, sampler):
    n = 30
    x = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    w_true = torch.tensor([1.5, -1.0], dtype=torch.float64)
    y = (torch.rand(n, generator=generator, dtype=torch.float64) < torch.sigmoid(x @ w_true)).long()
    hmc = HMC(
        Logistic().double(),
        "classification",
        samples=200,
        warmup=100,
        chains=2,
        seed=0,
        sampler=sampler,
        max_steps=31,
    )
    hmc.fit(x, y)
    # posterior on a 401 x 401 grid over [-6, 6]^2 (the prior N(0, 1) puts < 1e-8 outside)
    g = torch.linspace(-6, 6, 401, dtype=torch.float64)
    w = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
    z = w @ x.T  # (G, n)
    loglik = (y * z - torch.nn.functional.softplus(z)).sum(1)
    logpost = loglik - 0.5 * (w**2).sum(1)
    post = torch.softmax(logpost, 0)
    xt = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0], [-0.5, 2.0]], dtype=torch.float64)
    pt = torch.sigmoid(w @ xt.T)  # (G, 4)
    exact = (post[:, None] * pt).sum(0)
    sd = ((post[:, None] * (pt - exact) ** 2).sum(0)).sqrt()
    res = hmc.predict(xt, keep_samples=True)
    p1 = res.samples[..., 1]  # (S, 4)
    n_eff = ess(p1[:, 1:].reshape(2, -1, 3))  # point 0 never moves: its ESS is undefined
    got = res.probs[:, 1]
    # point 0 is x = 0: p = 1/2 for every w, exactly representable
    assert float(got[0]) == 0.5
    assert ((got[1:] - exact[1:]).abs() < 5 * sd[1:] / n_eff.sqrt()).all()
    assert hmc.diagnostics.predictive_rhat["max"] < 1.05
    assert res.mutual_information.shape == (4,)


# ---------------------------------------------------------------- diagnostics


def naive_split_rhat(draws: torch.Tensor) -> torch.Tensor:
    """BDA3 split R-hat, written out: halves of each chain as separate chains."""
    k, s = draws.shape[:2]
    half = s // 2
    chains = torch.cat([draws[:, :half], draws[:, s - half :]], 0)  # (2K, half, ...)
    n = chains.shape[1]
    means = chains.mean(1)
    w = chains.var(1, unbiased=True).mean(0)
    b_over_n = means.var(0, unbiased=True)
    var_plus = (n - 1) / n * w + b_over_n
    return (var_plus / w).sqrt()


def test_split_rhat_matches_naive_and_detects_disagreement(generator):
    draws = torch.randn(4, 500, 3, generator=generator, dtype=torch.float64)
    draws[1, :, 2] += 3.0  # chain 1 sits elsewhere on coordinate 2
    got = split_rhat(draws)
    # same formula, different summation order: eps * sample count
    assert torch.allclose(got, naive_split_rhat(draws), rtol=0, atol=1e-12)
    assert (got[:2] < 1.05).all() and got[2] > 1.5


def test_ess_of_ar1_chain(generator):
    # AR(1) with coefficient r: ESS / n -> (1 - r) / (1 + r) = 1/3 for r = 0.5;
    # the estimator's relative sd at n = 4 x 5000 is ~3%, so 15% is 5 sd
    k, n, r = 4, 5000, 0.5
    e = torch.randn(k, n, generator=generator, dtype=torch.float64)
    x = torch.zeros(k, n, dtype=torch.float64)
    x[:, 0] = e[:, 0] / math.sqrt(1 - r * r)
    for t in range(1, n):
        x[:, t] = r * x[:, t - 1] + e[:, t]
    got = float(ess(x)) / (k * n)
    assert abs(got - 1 / 3) < 0.15 / 3
    iid = float(ess(torch.randn(k, n, generator=generator, dtype=torch.float64))) / (k * n)
    assert abs(iid - 1.0) < 0.15


def test_diagnostics_record_and_warn(generator):
    x = torch.randn(20, 1, generator=generator)
    y = x[:, 0] + 0.1 * torch.randn(20, generator=generator)
    with pytest.warns(UserWarning) as caught:
        hmc = HMC(nn.Linear(1, 1), noise_std=0.1, samples=5, warmup=5, chains=3).fit(x, y)
    texts = [str(w.message) for w in caught]
    assert "HMC.fit: expected an effective sample size >= 75 on the parameters" in " ".join(texts)
    d = hmc.diagnostics
    assert d.chains == 3 and d.samples == 5 and d.parameters == 2
    assert len(d.divergences) == 3 and len(d.step_size) == 3 and min(d.step_size) > 0
    # every iteration takes at least one leapfrog step (one gradient each)
    assert d.gradient_evaluations >= 3 * (5 + 5)
    assert d.wall_time_s > 0 and d.warnings == texts and "more chains" in texts[0]
    assert hmc.draws.shape == (3, 5, 2)


def test_global_rng_untouched(generator):
    x = torch.randn(10, 1, generator=generator)
    y = x[:, 0]
    hmc = HMC(nn.Linear(1, 1), noise_std=0.3, samples=10, warmup=10, chains=2, init="prior")
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # convergence is not the point here
        hmc.fit(x, y)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_seeded_runs_repeat(generator):
    x = torch.randn(10, 1, generator=generator)
    y = x[:, 0]
    model = nn.Linear(1, 1)
    runs = []
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # 10 draws: convergence not the point
            hmc = HMC(model, noise_std=0.3, samples=10, warmup=10, chains=2, seed=5).fit(x, y)
        runs.append(hmc.draws)
    # same seed, same ops on the same shapes: identical draws
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0][0], runs[0][1])  # chains use their own seeds


# ---------------------------------------------------------------- errors


def test_argument_errors():
    m = nn.Linear(2, 1)
    with pytest.raises(ValueError, match=r"HMC: expected chains >= 1, but got 0"):
        HMC(m, chains=0)
    with pytest.raises(ValueError, match=r"HMC: expected likelihood to be one of"):
        HMC(m, likelihood="poisson")
    with pytest.raises(ValueError, match=r"HMC: expected prior_std > 0, but got -1.0"):
        HMC(m, prior_std=-1.0)
    with pytest.raises(ValueError, match=r"expected noise_std=None with likelihood='classif"):
        HMC(m, "classification", noise_std=0.1)
    with pytest.raises(ValueError, match=r"HMC: expected init models with parameter shapes"):
        HMC(m, init=[nn.Linear(3, 1)])
    with pytest.raises(TypeError, match=r"HMC: expected init to be 'model', 'prior' or a list"):
        HMC(m, init=nn.Linear(2, 1))
    with pytest.raises(ValueError, match=r"HMC: expected sampler to be one of \['hmc', 'nuts'\]"):
        HMC(m, sampler="mala")
    with pytest.raises(ValueError, match=r"HMC: expected thin >= 1, but got 0\. Pass an int"):
        HMC(m, thin=0)
    with pytest.raises(ValueError, match=r"HMC: expected trajectory_length > 0, but got 0\.0\."):
        HMC(m, trajectory_length=0.0)
    with pytest.raises(ValueError, match=r"HMC: expected target_accept in \(0, 1\), but got 1\.0"):
        HMC(m, target_accept=1.0)
    with pytest.raises(ValueError, match=r"HMC: expected max_steps >= 1, but got 0"):
        HMC(m, max_steps=0)
    with pytest.raises(
        RuntimeError,
        match=r"HMC: expected a fitted sampler, but got an unfitted instance\. "
        r"Call fit\(x, target\) first\.$",
    ):
        HMC(m).predict(torch.zeros(1, 2))


@pytest.mark.parametrize(
    ("likelihood", "x", "y", "exc", "match"),
    [
        ("regression", "nan", "ok", ValueError, r"HMC.fit: expected finite x, but got 1 non-fin"),
        (
            "regression",
            "ok",
            "nan",
            ValueError,
            r"HMC.fit: expected a finite target, but got 1 non",
        ),
        ("regression", "ok", "short", ValueError, r"HMC.fit: expected target of shape \(6, 1\)"),
        ("regression", "ok", "list", TypeError, r"HMC.fit: expected target to be a torch.Tensor"),
        ("classification", "ok", "label9", ValueError, r"expected target in \[0, 2\].*9"),
        ("classification", "ok", "float", ValueError, r"expected an integer class target of shape"),
    ],
)
def test_bad_data_errors_leave_model_unchanged(likelihood, x, y, exc, match, generator):
    out = 1 if likelihood == "regression" else 3
    model = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, out))
    model.train()
    before = snapshot(model)
    xs = torch.randn(6, 2, generator=generator)
    if x == "nan":
        xs[2, 1] = float("nan")
    ys = {
        "ok": torch.randn(6) if out == 1 else torch.tensor([0, 1, 2, 0, 1, 2]),
        "nan": torch.tensor([0.0, 1, float("nan"), 0, 1, 2]),
        "short": torch.randn(5),
        "list": [0.0] * 6,
        "label9": torch.tensor([0, 1, 9, 0, 1, 2]),
        "float": torch.zeros(6),
    }[y]
    with pytest.raises(exc, match=match):
        HMC(model, likelihood, samples=5, warmup=5).fit(xs, ys)
    assert same(model, before)


def test_max_tree_depth_is_a_deprecated_spelling_of_max_steps():
    with pytest.warns(
        DeprecationWarning,
        match=r"^HMC: the keyword max_tree_depth= is deprecated; pass max_steps=31 "
        r"\(= 2\*\*5 - 1\) instead\.$",
    ):
        hmc = HMC(nn.Linear(1, 1), max_tree_depth=5)
    assert hmc.max_steps == 31


def test_start_with_infinite_energy_is_refused(generator):
    model = nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.fill_(1e200)  # the prior's and the residuals' squares overflow float64
    before = snapshot(model)
    x, y = torch.randn(8, 1, generator=generator), torch.randn(8, generator=generator)
    with pytest.raises(
        ValueError,
        match=r"^HMC.fit: expected every chain to start at a finite posterior density, but got "
        r"energy inf for chain 0\. Start from a trained model",
    ):
        HMC(model, noise_std=0.1, samples=5, warmup=5).fit(x.double(), y.double())
    assert same(model, before)


def test_too_large_is_refused_with_numbers(generator):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    before = snapshot(model)
    x, y = torch.randn(16, 4, generator=generator), torch.randn(16, generator=generator)
    hmc = HMC(model, samples=10, warmup=10, max_seconds=1e-6)
    with pytest.raises(
        ValueError,
        match=r"expected a model small enough for full-batch HMC.*"
        r"got 49 parameters on 16 rows: one gradient of 4 chain\(s\) takes .* ms, so 20 "
        r"iterations x 1023 leapfrog steps could take",
    ):
        hmc.fit(x, y)
    assert set(hmc.estimate) == {"gradient_ms", "worst_case_s", "memory_mb"}
    with pytest.raises(ValueError, match=r"the draws plus one gradient need"):
        HMC(model, samples=10, warmup=10, max_memory_mb=1e-9).fit(x, y)
    assert same(model, before)


def test_y_keyword_is_a_deprecated_alias_of_target(generator):
    model = nn.Linear(2, 1)
    x, y = torch.randn(8, 2, generator=generator), torch.randn(8, generator=generator)
    with pytest.warns(
        DeprecationWarning, match=r"^HMC.estimate_cost: the keyword y= is deprecated"
    ):
        old = HMC(model, noise_std=0.1).estimate_cost(x, y=y)
    assert set(old) == set(HMC(model, noise_std=0.1).estimate_cost(x, target=y))
    # fit refuses before sampling (the budget), after taking target= the same way
    with pytest.warns(DeprecationWarning, match=r"^HMC.fit: the keyword y= is deprecated"):
        with pytest.raises(ValueError, match=r"expected a model small enough"):
            HMC(model, noise_std=0.1, max_seconds=1e-6).fit(x, y=y)


# ---------------------------------------------------------------- compare


def test_compare_reports_distance_to_hmc(toy):
    model = toy["model"]
    before = snapshot(model)
    hmc = HMC(model, "classification", samples=20, warmup=20, chains=2, max_steps=7)
    with pytest.warns(UserWarning):  # 20 draws of a 160-weight MLP do not converge
        cmp = compare_uncertainty(
            model,
            toy["test"],
            val=toy["val"],
            train=toy["train"],
            methods=["softmax", "mc_dropout", "hmc"],
            samples=8,
            measure_memory=False,
            hmc=hmc,
        )
    assert same(model, before)
    by = {r.method: r for r in cmp.reports}
    # HMC against itself: identical tensors
    assert by["hmc"].reference["top1_agreement"] == 1.0
    assert by["hmc"].reference["total_variation"] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the same R-hat warning again
        ref = hmc.predict(toy["test"][0]).probs
    soft = torch.softmax(model.eval()(toy["test"][0]).double(), -1)
    model.train(before[0][0])
    naive_agree = float((soft.argmax(1) == ref.argmax(1)).double().mean())
    assert by["softmax"].reference["top1_agreement"] == pytest.approx(naive_agree, abs=1e-12)
    assert by["hmc"].forward_passes == 40 and by["hmc"].parameters == hmc.num_parameters
    assert "calibrated.total_variation" in by["mc_dropout"].reference
    with pytest.raises(ValueError, match=r"expected train=\(inputs, labels\) with method 'hmc'"):
        compare_uncertainty(model, toy["test"], methods=["hmc"])


# ---------------------------------------------------------------- extend


def test_extend_continues_the_same_chains(generator):
    x = torch.randn(30, 1, generator=generator, dtype=torch.float64)
    y = 2 * x[:, 0] + 0.3 * torch.randn(30, generator=generator, dtype=torch.float64)
    model = nn.Linear(1, 1).double()

    def hmc(samples: int) -> HMC:
        return HMC(model, samples=samples, warmup=40, chains=3, thin=2, seed=4, max_steps=31)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"HMC\.(fit|extend|predict): expected", UserWarning)
        long = hmc(30).fit(x, y)
        short = hmc(12).fit(x, y)
        short.extend(18)
        res = short.predict(x[:2])
    # same generator, same states, the jitter sequence picks up where it stopped:
    # on one machine the continued chains are bit for bit the longer run
    assert torch.equal(short.draws, long.draws)
    d, e = short.diagnostics, long.diagnostics
    assert short.samples == 30 and d.extensions == 1 and e.extensions == 0
    assert d.divergences == e.divergences
    # the continuation re-evaluates each chain's start once: 3 more evaluations
    assert d.gradient_evaluations == e.gradient_evaluations + 3
    assert res.extras["forward_passes"] == 90 and d.predictive_rhat


def test_extend_errors():
    m = nn.Linear(1, 1)
    with pytest.raises(RuntimeError, match=r"^HMC: expected a fitted sampler"):
        HMC(m).extend(5)
    x, y = torch.randn(20, 1), torch.randn(20)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"HMC\.fit: expected", UserWarning)
        nuts = HMC(m, sampler="nuts", samples=5, warmup=5, chains=1, max_steps=3).fit(x, y)
    with pytest.raises(
        ValueError,
        match=r"^HMC.extend: expected sampler='hmc' \(chains that can be resumed\), but got "
        r"'nuts'\. Fit with sampler='hmc', or fit again with more samples\.$",
    ):
        nuts.extend(5)
    with pytest.raises(ValueError, match=r"^HMC.extend: expected samples >= 1, but got 0"):
        nuts.extend(0)


def test_chains_that_never_move_say_so():
    # every proposal rejected (a step size that never adapted): no R-hat exists, and the
    # warning says why rather than "the chains disagree" with a nan
    from dropkit.baselines._hmc_diagnostics import HMCDiagnostics, summarize_draws

    stuck = torch.arange(3.0).view(3, 1, 1).expand(3, 8, 5)  # each chain constant
    rhat, ess_ = summarize_draws(stuck)
    assert math.isnan(rhat["max"]) and math.isnan(ess_["min"])
    diag = HMCDiagnostics(
        chains=3, samples=8, warmup=20, parameters=5, accept_rate=[0.0, 1e-9, 0.0]
    )
    with pytest.warns(UserWarning) as caught:
        diag.check("HMC.fit", "parameters", rhat, ess_, stacklevel=2)
    assert [str(w.message) for w in caught] == [
        "HMC.fit: expected the chains to move, but got the same parameters in every kept draw "
        "(best acceptance rate 1e-09): every proposal was rejected. The step size did not adapt "
        "in 20 warm-up iterations; run a longer warmup (150 or more)."
    ]
    assert diag.warnings == [str(caught[0].message)]

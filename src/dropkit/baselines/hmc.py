"""Full-batch Hamiltonian Monte Carlo over a network's weights: the Bayesian reference.

The posterior ``p(theta | D)`` of every parameter of a small network, with an
isotropic Gaussian prior ``N(0, prior_std**2)`` and a Gaussian (regression) or
categorical (classification) likelihood on the whole training set, sampled by
the No-U-Turn sampler of pyro-ppl (step size and a diagonal mass matrix are
adapted during warm-up). For regression with ``noise_std=None`` the noise
precision ``tau`` is sampled too, with a ``Gamma(1, 0.1)`` prior (standardise
targets first), in log space. The sampler works on a flat float64 copy of the
parameters and evaluates the model with ``torch.func.functional_call`` in eval
mode, so the model you pass is never modified. Chains run one after another
in this process (seeds ``seed + k``), which keeps pyro's multiprocessing out.
The potential is handed to NUTS directly (``potential_fn``), not compiled:
pyro's ``jit_compile=True`` traces a pyro model with ``torch.jit.trace``, which
torch 2.14 deprecates with a ``FutureWarning`` (an error under warnings-as-
errors), and it was not faster here (BENCHMARKS.md).

The predictive is the average over all kept draws (``S = chains x samples``):
an :class:`MCResult` like every other baseline. Before sampling, one gradient
evaluation is timed and its memory measured; a model whose worst-case run (every
NUTS tree at ``max_tree_depth``) exceeds ``max_seconds`` or ``max_memory_mb`` is
refused with the numbers.

References:
    Neal (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC.
    Hoffman, Gelman (2014). The No-U-Turn sampler. JMLR.
    Izmailov, Vikram, Hoffman, Wilson (2021). What are Bayesian neural network
    posteriors really like? ICML.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from dropkit._optional import require
from dropkit._validation import _fail, check_choice, check_int, check_module, renamed_kwargs
from dropkit.baselines._common import check_batch_size, check_inputs, eval_mode
from dropkit.baselines._cost import PeakTensorMemory
from dropkit.baselines._hmc_diagnostics import HMCDiagnostics, summarize_draws
from dropkit.uncertainty.result import MCResult

LIKELIHOODS = ("regression", "classification")
INITS = ("model", "prior")
NOISE_PRIOR = (1.0, 0.1)
"""Shape and rate of the Gamma prior on the noise precision when it is sampled."""


def _positive(caller: str, value: Any, name: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(TypeError, caller, f"{name} to be a float", value, fix)
    if not (math.isfinite(value) and value > 0):
        raise _fail(ValueError, caller, f"{name} > 0", value, fix)
    return float(value)


class HMC:
    """NUTS on all parameters of a small model, predicting an ``MCResult``.

    Args:
        model: The network (its current parameters are the default start of
            every chain; dropout is off while sampling and predicting).
        likelihood: ``"regression"`` (Gaussian noise) or ``"classification"``
            (softmax over the model's logits).
        prior_std: Standard deviation of the Gaussian prior on every parameter.
        noise_std: Known regression noise; ``None`` samples the noise precision.
        samples: Kept draws per chain.
        warmup: Warm-up iterations per chain (discarded).
        chains: Independent chains, run one after another.
        seed: Chain ``k`` runs with seed ``seed + k``; torch's global generator
            is restored afterwards.
        max_tree_depth: NUTS doubling limit (at most ``2**depth - 1`` leapfrog
            steps per iteration).
        init: ``"model"`` (every chain starts at the model's parameters),
            ``"prior"`` (each chain at its own prior draw), or one model per
            chain of the same architecture (e.g. ensemble members).
        max_seconds: Refuse when the worst-case run would take longer.
        max_memory_mb: Refuse when draws plus one gradient evaluation need more.
        threads: torch intra-op threads while sampling (restored afterwards);
            one suits the small models HMC can afford, ``None`` keeps torch's.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.randn(20, 1)
        >>> y = 2 * x[:, 0] + 0.1 * torch.randn(20)
        >>> net = nn.Linear(1, 1)
        >>> hmc = HMC(net, noise_std=0.1, samples=150, warmup=150, max_tree_depth=5).fit(x, y)
        >>> res = hmc.predict(torch.tensor([[1.0]]))
        >>> round(float(res.mean[0]), 1), res.extras["forward_passes"]
        (2.0, 300)
        >>> hmc.diagnostics.predictive_rhat["max"] < 1.05
        True

    References:
        Hoffman, Gelman (2014). The No-U-Turn sampler. JMLR.
        Izmailov et al. (2021). What are Bayesian neural network posteriors
        really like? ICML.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: str = "regression",
        *,
        prior_std: float = 1.0,
        noise_std: float | None = None,
        samples: int = 200,
        warmup: int = 200,
        chains: int = 2,
        seed: int = 0,
        max_tree_depth: int = 8,
        init: str | Sequence[nn.Module] = "model",
        max_seconds: float = 21600.0,
        max_memory_mb: float = 4096.0,
        threads: int | None = 1,
    ) -> None:
        caller = "HMC"
        self.model = check_module(caller, model)
        self.likelihood = check_choice(caller, likelihood, "likelihood", LIKELIHOODS)
        self.prior_std = _positive(caller, prior_std, "prior_std", "Pass e.g. prior_std=1.0.")
        self.noise_std = (
            None
            if noise_std is None
            else _positive(caller, noise_std, "noise_std", "Pass a noise scale or None.")
        )
        if self.likelihood == "classification" and self.noise_std is not None:
            raise ValueError(
                f"{caller}: expected noise_std=None with likelihood='classification', but got "
                f"{noise_std!r}. A categorical likelihood has no noise scale; drop noise_std."
            )
        self.samples = check_int(caller, samples, "samples")
        self.warmup = check_int(caller, warmup, "warmup")
        self.chains = check_int(caller, chains, "chains")
        self.seed = check_int(caller, seed, "seed", minimum=0)
        self.max_tree_depth = check_int(caller, max_tree_depth, "max_tree_depth")
        self.max_seconds = _positive(caller, max_seconds, "max_seconds", "Pass seconds.")
        self.max_memory_mb = _positive(caller, max_memory_mb, "max_memory_mb", "Pass MiB.")
        self.threads = None if threads is None else check_int(caller, threads, "threads")
        self._names = [n for n, _ in model.named_parameters()]
        self._shapes = [p.shape for _, p in model.named_parameters()]
        self._sizes = [p.numel() for _, p in model.named_parameters()]
        if not self._names:
            raise ValueError(
                f"{caller}: expected a model with parameters, but got {type(model).__name__} "
                "with none. Sample a model that has weights."
            )
        self._init = self._check_init(init)
        self.num_parameters = sum(self._sizes)
        self._draws: torch.Tensor | None = None
        self.diagnostics: HMCDiagnostics | None = None
        self.fit_time_s: float | None = None
        self.estimate: dict[str, float] = {}

    def _check_init(self, init: Any) -> str | list[torch.Tensor]:
        if isinstance(init, str):
            return check_choice("HMC", init, "init", INITS)
        if isinstance(init, nn.Module) or not isinstance(init, Sequence) or not init:
            raise TypeError(
                "HMC: expected init to be 'model', 'prior' or a list of models, but got "
                f"{type(init).__name__!r}. Pass e.g. the members of a deep ensemble."
            )
        flats = []
        for m in init:
            check_module("HMC", m, "init[i]")
            shapes = [p.shape for p in m.parameters()]
            if shapes != self._shapes:
                raise ValueError(
                    f"HMC: expected init models with parameter shapes {self._shapes}, but got "
                    f"{shapes}. Pass models of the sampled model's architecture."
                )
            flats.append(self._flatten(m))
        return flats

    @staticmethod
    def _flatten(model: nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])

    def _unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(theta[: self.num_parameters], self._sizes)
        out = {n: t.view(s) for n, t, s in zip(self._names, parts, self._shapes)}
        for name, buf in self.model.named_buffers():
            out[name] = buf.double() if buf.is_floating_point() else buf
        return out

    def _forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self._unflatten(theta), (x,))

    # ------------------------------------------------------------------ fit
    def _targets(self, caller: str, x: torch.Tensor, y: Any, out: torch.Tensor) -> torch.Tensor:
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"{caller}: expected y to be a torch.Tensor, but got {type(y).__name__!r}. "
                "Pass targets as a tensor."
            )
        n = x.shape[0]
        if self.likelihood == "classification":
            if out.dim() != 2:
                raise ValueError(
                    f"{caller}: expected the model to return logits (N, C), but got shape "
                    f"{tuple(out.shape)}. Wrap the model so it returns class logits."
                )
            if y.dtype.is_floating_point or y.dtype == torch.bool or tuple(y.shape) != (n,):
                raise ValueError(
                    f"{caller}: expected an integer class target of shape ({n},), but got "
                    f"{y.dtype} of shape {tuple(y.shape)}. Pass y.long() with one label per row."
                )
            c = out.shape[1]
            if n and (int(y.min()) < 0 or int(y.max()) >= c):
                bad = int(y[(y < 0) | (y >= c)][0])
                raise ValueError(
                    f"{caller}: expected target in [0, {c - 1}] (the model returns {c} "
                    f"logits), but got {bad!r}. Check the labels or the model's output size."
                )
            return y.long()
        if y.shape != out.shape and not (y.numel() == out.numel() and y.shape[:1] == out.shape[:1]):
            raise ValueError(
                f"{caller}: expected y of shape {tuple(out.shape)} (the model's output), but got "
                f"{tuple(y.shape)}. Pass one target per output, e.g. y.reshape(N, -1)."
            )
        y = y.double().reshape(out.shape)
        if not bool(torch.isfinite(y).all()):
            raise ValueError(
                f"{caller}: expected finite y, but got {int((~torch.isfinite(y)).sum())} "
                "non-finite values. Drop or impute those rows."
            )
        return y

    def _potential(self, x: torch.Tensor, y: torch.Tensor, counter: list[int]) -> Any:
        var = self.prior_std**2
        a, b = NOISE_PRIOR
        n_out = y.numel()
        sample_noise = self.likelihood == "regression" and self.noise_std is None

        def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
            counter[0] += 1
            theta = params["theta"]
            w = theta[: self.num_parameters]
            energy = 0.5 * (w * w).sum() / var
            f = self._forward(theta, x)
            if self.likelihood == "classification":
                return energy + torch.nn.functional.cross_entropy(f, y, reduction="sum")
            sq = ((y - f) ** 2).sum()
            if sample_noise:
                log_tau = theta[-1]
                # Gamma(a, b) on tau, in log space (the Jacobian adds log_tau).
                return (
                    energy
                    + 0.5 * log_tau.exp() * sq
                    - 0.5 * n_out * log_tau
                    - a * log_tau
                    + b * log_tau.exp()
                )
            assert self.noise_std is not None
            return energy + 0.5 * sq / self.noise_std**2

        return potential

    def _start(self, k: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if isinstance(self._init, list):
            theta = self._init[k % len(self._init)].clone()
        elif self._init == "prior":
            theta = self.prior_std * torch.randn(self.num_parameters, dtype=torch.float64)
        else:
            theta = self._flatten(self.model)
        if self.likelihood == "regression" and self.noise_std is None:
            with torch.no_grad():
                resid = float(((y - self._forward(theta, x)) ** 2).mean())
            tau0 = 1.0 / min(max(resid, 1e-4), 1e4)
            theta = torch.cat([theta, theta.new_tensor([math.log(tau0)])])
        return theta

    @renamed_kwargs(y="target")
    def estimate_cost(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Time one gradient evaluation and estimate a run's cost, without sampling.

        Args:
            x: Training inputs ``(N, ...)``.
            target: Targets, as for :meth:`fit`.

        Shape:
            - x: ``(N, ...)``.

        Returns:
            ``gradient_ms``, ``worst_case_s`` (every NUTS tree at
            ``max_tree_depth``) and ``memory_mb`` (draws plus one gradient).
        """
        caller = "HMC.estimate_cost"
        require("pyro.infer.mcmc", "bayes", caller)
        check_inputs(caller, x)
        x = x.detach().double()
        self._n = int(x.shape[0])
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            with eval_mode(self.model), torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                with torch.no_grad():
                    out = self._forward(self._flatten(self.model), x)
                y_ = self._targets(caller, x, target, out)
                potential = self._potential(x, y_, [0])
                self._check_budget(caller, potential, self._start(0, x, y_), refuse=False)
        finally:
            torch.set_num_threads(threads)
        return dict(self.estimate)

    def _check_budget(
        self, caller: str, potential: Any, theta: torch.Tensor, refuse: bool = True
    ) -> None:
        from pyro.ops.integrator import potential_grad

        z = {"theta": theta}
        potential_grad(potential, z)  # warm-up: lazy init, allocator
        times = []
        for _ in range(5):
            start = time.perf_counter()
            potential_grad(potential, z)
            times.append(time.perf_counter() - start)
        with PeakTensorMemory() as tracker:
            potential_grad(potential, z)
        t_grad = min(times)  # the least disturbed by other processes
        iters = self.chains * (self.warmup + self.samples)
        worst = iters * (2**self.max_tree_depth - 1) * t_grad
        draws_mb = self.chains * self.samples * theta.numel() * 8 / 2**20
        memory = tracker.peak_bytes / 2**20 + draws_mb
        self.estimate = {
            "gradient_ms": t_grad * 1e3,
            "worst_case_s": worst,
            "memory_mb": memory,
        }
        if refuse and (worst > self.max_seconds or memory > self.max_memory_mb):
            raise ValueError(
                f"{caller}: expected a model small enough for full-batch HMC (worst case "
                f"<= {self.max_seconds:.0f} s and <= {self.max_memory_mb:.0f} MiB), but got "
                f"{theta.numel()} parameters on {self._n} rows: one gradient takes "
                f"{t_grad * 1e3:.2f} ms, so {iters} iterations x {2**self.max_tree_depth - 1} "
                f"leapfrog steps could take {worst:.0f} s, and the draws plus one gradient need "
                f"{memory:.1f} MiB. Use a smaller model or fewer rows, lower samples, warmup, "
                "chains or max_tree_depth, or raise max_seconds / max_memory_mb."
            )

    @renamed_kwargs(y="target")
    def fit(self, x: torch.Tensor, target: torch.Tensor) -> HMC:
        """Sample the posterior given the full training set.

        Args:
            x: Training inputs ``(N, ...)``, finite.
            target: Regression targets shaped like the model's output (``(N,)``
                is accepted for an ``(N, 1)`` output) or class labels ``(N,)``.

        Shape:
            - x: ``(N, ...)``.
            - target: ``(N, ...)`` (regression) or ``(N,)`` (classification).

        Returns:
            ``self``; :attr:`diagnostics` holds R-hat, ESS, divergences, step
            sizes, gradient evaluations and wall time.

        Raises:
            TypeError: If ``x`` or ``target`` is not a tensor.
            ValueError: On non-finite data, a wrong ``target`` shape, labels out of
                range, or a model too large for the budget.
        """
        caller = "HMC.fit"
        pyro_mcmc = require("pyro.infer.mcmc", "bayes", caller)
        check_inputs(caller, x)
        x = x.detach().double()
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"{caller}: expected finite x, but got {int((~torch.isfinite(x)).sum())} "
                "non-finite values. Drop or impute those rows."
            )
        self._n = int(x.shape[0])
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            self._sample(caller, pyro_mcmc, x, target)
        finally:
            torch.set_num_threads(threads)
        return self

    def _sample(self, caller: str, pyro_mcmc: Any, x: torch.Tensor, y: Any) -> None:
        with eval_mode(self.model):
            first = self._flatten(self.model)
            with torch.no_grad():
                out = self._forward(first, x)
            y_ = self._targets(caller, x, y, out)
            counter = [0]
            potential = self._potential(x, y_, counter)
            draws, steps, divergences = [], [], []
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self._check_budget(caller, potential, self._start(0, x, y_))
                counter[0] = 0
                start = time.perf_counter()
                for k in range(self.chains):
                    torch.manual_seed(self.seed + k)
                    theta0 = self._start(k, x, y_)
                    kernel = pyro_mcmc.NUTS(
                        potential_fn=potential, max_tree_depth=self.max_tree_depth
                    )
                    mcmc = pyro_mcmc.MCMC(
                        kernel,
                        num_samples=self.samples,
                        warmup_steps=self.warmup,
                        initial_params={"theta": theta0},
                        disable_progbar=True,
                    )
                    mcmc.run()
                    draws.append(mcmc.get_samples()["theta"].detach().double())
                    steps.append(float(kernel.step_size))
                    divergences.append(len(mcmc.diagnostics()["divergences"]["chain 0"]))
                wall = time.perf_counter() - start
        self._draws = torch.stack(draws)  # (K, S, P)
        rhat, ess = summarize_draws(self._draws)
        self.diagnostics = HMCDiagnostics(
            chains=self.chains,
            samples=self.samples,
            warmup=self.warmup,
            parameters=int(self._draws.shape[-1]),
            rhat=rhat,
            ess=ess,
            divergences=divergences,
            step_size=steps,
            gradient_evaluations=counter[0],
            wall_time_s=wall,
        )
        self.fit_time_s = wall
        self.diagnostics.check(caller, "parameters", rhat, ess, stacklevel=4)  # via fit

    # -------------------------------------------------------------- predict
    @property
    def draws(self) -> torch.Tensor:
        """The kept draws ``(chains, samples, parameters)`` (float64)."""
        if self._draws is None:
            raise RuntimeError(
                "HMC: expected a fitted sampler, but got an unfitted instance. "
                "Call fit(x, target) first."
            )
        return self._draws

    @property
    def noise_var(self) -> torch.Tensor | None:
        """Noise variance per draw ``(chains * samples,)``; ``None`` for classification."""
        if self.likelihood == "classification":
            return None
        flat = self.draws.reshape(-1, self.draws.shape[-1])
        if self.noise_std is not None:
            return torch.full((flat.shape[0],), self.noise_std**2, dtype=torch.float64)
        return torch.exp(-flat[:, -1])

    @renamed_kwargs(targets="target")
    def predict(
        self,
        x: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        batch_size: int | None = None,
        keep_samples: bool = False,
    ) -> MCResult:
        """Posterior predictive: the average over every kept draw.

        Regression: ``mean``, ``epistemic_var`` (variance of the draws' outputs)
        and ``aleatoric_var`` (``noise_std**2``, or the posterior mean of the
        sampled noise variance ``1 / tau``); with ``target`` the mixture
        log-likelihood. Classification: probabilities averaged over draws, with
        entropy and mutual information. Split R-hat and ESS of the predictive
        are stored in ``diagnostics.predictive_rhat`` / ``predictive_ess``.

        Args:
            x: Inputs ``(N, ...)``.
            target: Regression targets for ``log_likelihood``.
            batch_size: Chunk size of the forward passes.
            keep_samples: Store the ``(S, N, ...)`` per-draw outputs.

        Shape:
            - x: ``(N, ...)``.
            - result.mean: ``(N, C)`` or the model's output shape.

        Returns:
            An :class:`MCResult` (float64) with ``S = chains * samples``;
            ``extras`` holds ``method``, ``forward_passes`` (``= S``) and
            ``chains``.
        """
        caller = "HMC.predict"
        draws = self.draws
        check_inputs(caller, x)
        bs = check_batch_size(caller, batch_size) or x.shape[0]
        x = x.detach().double()
        flat = draws.reshape(-1, draws.shape[-1])
        outs = []
        with eval_mode(self.model), torch.no_grad():
            for theta in flat:
                parts = [self._forward(theta, x[i : i + bs]) for i in range(0, x.shape[0], bs)]
                out = torch.cat(parts)
                outs.append(torch.softmax(out, -1) if self.likelihood == "classification" else out)
        stacked = torch.stack(outs)  # (S, N, ...)
        if self.likelihood == "classification":
            result = MCResult.from_samples(stacked, keep_samples=keep_samples)
        else:
            nv = self.noise_var
            assert nv is not None
            noise = nv.view(-1, *([1] * (stacked.dim() - 1))).expand_as(stacked)
            result = MCResult.from_samples(
                stacked,
                task="regression",
                keep_samples=keep_samples,
                target=target,
                noise_var=noise,
            )
        k = draws.shape[0]
        rhat, ess = summarize_draws(stacked.reshape(k, -1, *stacked.shape[1:]))
        assert self.diagnostics is not None
        self.diagnostics.predictive_rhat, self.diagnostics.predictive_ess = rhat, ess
        self.diagnostics.check(caller, "predictive", rhat, ess)
        result.extras.update(method="hmc", forward_passes=int(flat.shape[0]), chains=k)
        return result

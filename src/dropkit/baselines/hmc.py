"""Full-batch Hamiltonian Monte Carlo over a network's weights: the Bayesian reference.

The posterior ``p(theta | D)`` of every parameter of a small network, with an
isotropic Gaussian prior ``N(0, prior_std**2)`` and a Gaussian (regression) or
categorical (classification) likelihood on the whole training set
(:mod:`~dropkit.baselines._hmc_posterior`). For regression with
``noise_std=None`` the noise precision ``tau`` is sampled too, with a
``Gamma(1, 0.1)`` prior (standardise targets first), in log space. The sampler
works on a flat float64 copy of the parameters and evaluates the model with
``torch.func.functional_call`` in eval mode, so the model you pass is never
modified.

Two engines:

* ``sampler="hmc"`` (default): every chain advances together, one batched
  gradient call for all of them, with a shared adapted step size, a diagonal
  metric adapted from the pooled within-chain variance, and a jittered
  trajectory of ``trajectory_length`` posterior standard deviations
  (:mod:`~dropkit.baselines._hmc_sampler`). Needs torch only.
* ``sampler="nuts"``: pyro-ppl's No-U-Turn sampler, one chain after another
  (:mod:`~dropkit.baselines._hmc_nuts`).

BENCHMARKS.md has the measurement behind the default. The predictive is the
average over all kept draws (``S = chains x samples``): an :class:`MCResult`
like every other baseline. Before sampling, one gradient evaluation is timed
and its memory measured; a model whose worst-case run (every iteration at
``max_steps`` leapfrog steps) exceeds ``max_seconds`` or ``max_memory_mb`` is
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
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dropkit._optional import require
from dropkit._validation import (
    _fail,
    check_bool,
    check_choice,
    check_int,
    check_module,
    renamed_kwargs,
)
from dropkit.baselines._common import check_batch_size, check_inputs, eval_mode
from dropkit.baselines._cost import PeakTensorMemory
from dropkit.baselines._hmc_collapsed import CollapsedPosterior, linear_last
from dropkit.baselines._hmc_diagnostics import HMCDiagnostics, summarize_draws
from dropkit.baselines._hmc_nuts import sample_nuts, tree_depth
from dropkit.baselines._hmc_posterior import NOISE_PRIOR, Posterior
from dropkit.baselines._hmc_sampler import ChainRun, sample_chains
from dropkit.uncertainty.result import MCResult

__all__ = ["HMC", "NOISE_PRIOR"]

LIKELIHOODS = ("regression", "classification")
SAMPLERS = ("hmc", "nuts")
INITS = ("model", "prior")
#: Draws evaluated together by :meth:`HMC.predict` (one vectorised call each).
PREDICT_CHUNK = 64


def _positive(caller: str, value: Any, name: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(TypeError, caller, f"{name} to be a float", value, fix)
    if not (math.isfinite(value) and value > 0):
        raise _fail(ValueError, caller, f"{name} > 0", value, fix)
    return float(value)


class HMC:
    """Hamiltonian Monte Carlo on all parameters of a small model, predicting an ``MCResult``.

    Args:
        model: The network (its current parameters are the default start of
            every chain; dropout is off while sampling and predicting).
        likelihood: ``"regression"`` (Gaussian noise) or ``"classification"``
            (softmax over the model's logits).
        prior_std: Standard deviation of the Gaussian prior on every parameter.
        noise_std: Known regression noise; ``None`` samples the noise precision.
        samples: Kept draws per chain.
        warmup: Warm-up (adaptation) iterations per chain, discarded.
        chains: Independent chains (R-hat compares them: use 4 or more).
        seed: Seeds the sampler's own generator (``"nuts"``: chain ``k`` runs
            with torch seed ``seed + k``); torch's global generator is restored.
        sampler: ``"hmc"`` (all chains vectorised) or ``"nuts"`` (pyro-ppl).
        thin: Keep one iteration in ``thin`` (``samples * thin`` iterations
            after warm-up); thinning saves memory and prediction time.
        trajectory_length: ``"hmc"``: the longest trajectory, in adapted
            posterior standard deviations (each iteration takes a jittered
            fraction); longer moves further per draw at more steps.
        max_steps: Most leapfrog steps in one iteration (``"nuts"``: the tree
            depth is ``floor(log2(max_steps + 1))``).
        target_accept: Acceptance probability the step size adapts to.
        marginalize: Regression with an ``nn.Sequential`` ending in an
            ``nn.Linear``: integrate the last layer out analytically (its
            conditional posterior is Gaussian), sample the rest, and draw the
            last layer exactly for every kept draw. The same posterior; each
            gradient costs more (a ``features x features`` Gram matrix and
            Cholesky factor per chain) and each draw moves further, which pays
            when the body dominates the cost (BENCHMARKS.md measures both).
        init: ``"model"`` (every chain starts at the model's parameters),
            ``"prior"`` (each chain at its own prior draw), or one model per
            chain of the same architecture (e.g. ensemble members).
        max_seconds: Refuse when the worst-case run would take longer.
        max_memory_mb: Refuse when draws plus one gradient evaluation need more.
        threads: torch intra-op threads while sampling (restored afterwards);
            one suits the small models HMC can afford, ``None`` keeps torch's.
        max_tree_depth: Deprecated: pass ``max_steps=2**depth - 1``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.randn(20, 1)
        >>> y = 2 * x[:, 0] + 0.1 * torch.randn(20)
        >>> net = nn.Linear(1, 1)
        >>> hmc = HMC(net, noise_std=0.1, samples=150, warmup=150).fit(x, y)
        >>> res = hmc.predict(torch.tensor([[1.0]]))
        >>> round(float(res.mean[0]), 1), res.extras["forward_passes"]
        (2.0, 600)
        >>> hmc.diagnostics.predictive_rhat["max"] < 1.05
        True

    References:
        Neal (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC.
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
        chains: int = 4,
        seed: int = 0,
        sampler: str = "hmc",
        thin: int = 1,
        trajectory_length: float = 2.0,
        max_steps: int = 1023,
        target_accept: float = 0.8,
        marginalize: bool = False,
        init: str | Sequence[nn.Module] = "model",
        max_seconds: float = 21600.0,
        max_memory_mb: float = 4096.0,
        threads: int | None = 1,
        max_tree_depth: int | None = None,
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
        self.warmup = check_int(caller, warmup, "warmup", minimum=0)
        self.chains = check_int(caller, chains, "chains")
        self.seed = check_int(caller, seed, "seed", minimum=0)
        self.sampler = check_choice(caller, sampler, "sampler", SAMPLERS)
        self.thin = check_int(caller, thin, "thin")
        self.trajectory_length = _positive(
            caller, trajectory_length, "trajectory_length", "Pass e.g. trajectory_length=2.0."
        )
        if max_tree_depth is not None:
            depth = check_int(caller, max_tree_depth, "max_tree_depth")
            warnings.warn(
                f"{caller}: the keyword max_tree_depth= is deprecated; pass "
                f"max_steps={2**depth - 1} (= 2**{depth} - 1) instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            max_steps = 2**depth - 1
        self.max_steps = check_int(caller, max_steps, "max_steps")
        if not (isinstance(target_accept, float) and 0.0 < target_accept < 1.0):
            raise _fail(
                ValueError, caller, "target_accept in (0, 1)", target_accept, "Pass e.g. 0.8."
            )
        self.target_accept = target_accept
        self.max_seconds = _positive(caller, max_seconds, "max_seconds", "Pass seconds.")
        self.max_memory_mb = _positive(caller, max_memory_mb, "max_memory_mb", "Pass MiB.")
        self.threads = None if threads is None else check_int(caller, threads, "threads")
        self.marginalize = self._check_marginalize(caller, marginalize, model)
        self.posterior = (
            CollapsedPosterior(model, self.prior_std, self.noise_std)
            if self.marginalize
            else Posterior(model, self.likelihood, self.prior_std, self.noise_std)
        )
        if not self.posterior.names:
            raise ValueError(
                f"{caller}: expected a model with parameters, but got {type(model).__name__} "
                "with none. Sample a model that has weights."
            )
        self._init = self._check_init(init)
        self.num_parameters = self.posterior.num_parameters
        self._draws: torch.Tensor | None = None
        self._last: ChainRun | None = None  # where extend() continues
        self._gen: torch.Generator | None = None
        self.diagnostics: HMCDiagnostics | None = None
        self.fit_time_s: float | None = None
        self.estimate: dict[str, float] = {}

    def _check_marginalize(self, caller: str, value: Any, model: nn.Module) -> bool:
        value = check_bool(caller, value, "marginalize")
        if value and not (self.likelihood == "regression" and linear_last(model) is not None):
            raise ValueError(
                f"{caller}: expected a regression nn.Sequential ending in an nn.Linear with "
                f"marginalize=True, but got likelihood={self.likelihood!r} and "
                f"{type(model).__name__}. Pass marginalize=False."
            )
        return value

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
            if shapes != self.posterior.shapes:
                raise ValueError(
                    f"HMC: expected init models with parameter shapes {self.posterior.shapes}, "
                    f"but got {shapes}. Pass models of the sampled model's architecture."
                )
            flats.append(Posterior.flatten(m))
        return flats

    # ------------------------------------------------------------------ data
    def _targets(self, caller: str, x: torch.Tensor, y: Any, out: torch.Tensor) -> torch.Tensor:
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"{caller}: expected target to be a torch.Tensor, but got "
                f"{type(y).__name__!r}. Pass the target as a tensor."
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
                    f"{y.dtype} of shape {tuple(y.shape)}. Pass target.long(), one label per row."
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
                f"{caller}: expected target of shape {tuple(out.shape)} (the model's output), "
                f"but got {tuple(y.shape)}. Pass one target per output, e.g. "
                "target.reshape(N, -1)."
            )
        y = y.double().reshape(out.shape)
        if not bool(torch.isfinite(y).all()):
            raise ValueError(
                f"{caller}: expected a finite target, but got "
                f"{int((~torch.isfinite(y)).sum())} non-finite values. Drop or impute those rows."
            )
        return y

    def _bind(self, caller: str, x: Any, target: Any) -> None:
        """Check and attach the training data (under eval mode, no grad for the probe)."""
        check_inputs(caller, x)
        x = x.detach().double()
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"{caller}: expected finite x, but got {int((~torch.isfinite(x)).sum())} "
                "non-finite values. Drop or impute those rows."
            )
        self._n = int(x.shape[0])
        with torch.no_grad():
            out = self.posterior.outputs(Posterior.flatten(self.model)[None], x)[0]
        self.posterior.bind(x, self._targets(caller, x, target, out))

    def _starts(self, gen: torch.Generator) -> torch.Tensor:
        """One start per chain ``(K, Q)``."""
        rows = []
        for k in range(self.chains):
            if isinstance(self._init, list):
                flat = self._init[k % len(self._init)].clone()
            elif self._init == "prior":
                flat = self.prior_std * torch.randn(
                    self.num_parameters, generator=gen, dtype=torch.float64
                )
            else:
                flat = Posterior.flatten(self.model)
            rows.append(self.posterior.start(flat))
        return torch.stack(rows)

    # ------------------------------------------------------------------ cost
    def _check_budget(self, caller: str, theta: torch.Tensor, refuse: bool = True) -> None:
        batch = theta if self.sampler == "hmc" else theta[:1]
        self.posterior.energy_and_grad(batch)  # warm-up: lazy init, allocator
        times = []
        for _ in range(5):
            start = time.perf_counter()
            self.posterior.energy_and_grad(batch)
            times.append(time.perf_counter() - start)
        with PeakTensorMemory() as tracker:
            self.posterior.energy_and_grad(batch)
        t_grad = min(times)  # the least disturbed by other processes
        steps = self.max_steps if self.sampler == "hmc" else 2 ** tree_depth(self.max_steps) - 1
        iters = (self.warmup + self.samples * self.thin) * (
            1 if self.sampler == "hmc" else self.chains
        )
        worst = iters * steps * t_grad
        draws_mb = self.chains * self.samples * theta.shape[1] * 8 / 2**20
        memory = tracker.peak_bytes / 2**20 + draws_mb
        self.estimate = {"gradient_ms": t_grad * 1e3, "worst_case_s": worst, "memory_mb": memory}
        if refuse and (worst > self.max_seconds or memory > self.max_memory_mb):
            unit = f"{batch.shape[0]} chain(s)"
            raise ValueError(
                f"{caller}: expected a model small enough for full-batch HMC (worst case "
                f"<= {self.max_seconds:.0f} s and <= {self.max_memory_mb:.0f} MiB), but got "
                f"{self.num_parameters} parameters on {self._n} rows: one gradient of {unit} takes "
                f"{t_grad * 1e3:.2f} ms, so {iters} iterations x {steps} leapfrog steps could "
                f"take {worst:.0f} s, and the draws plus one gradient need {memory:.1f} MiB. "
                "Use a smaller model or fewer rows, lower samples, warmup, chains or "
                "max_steps, or raise max_seconds / max_memory_mb."
            )

    def _threads(self) -> Any:
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return threads

    @renamed_kwargs(y="target")
    def estimate_cost(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Time one gradient evaluation and estimate a run's cost, without sampling.

        Args:
            x: Training inputs ``(N, ...)``.
            target: Targets, as for :meth:`fit`.

        Shape:
            - x: ``(N, ...)``.

        Returns:
            ``gradient_ms`` (one call: all chains for ``"hmc"``, one for
            ``"nuts"``), ``worst_case_s`` (every iteration at ``max_steps``)
            and ``memory_mb`` (draws plus one gradient).
        """
        caller = "HMC.estimate_cost"
        require("pyro.infer.mcmc", "bayes", caller)
        threads = self._threads()
        try:
            with eval_mode(self.model):
                self._bind(caller, x, target)
                gen = torch.Generator().manual_seed(self.seed)
                self._check_budget(caller, self._starts(gen), refuse=False)
        finally:
            torch.set_num_threads(threads)
        return dict(self.estimate)

    # ------------------------------------------------------------------ fit
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
                range, a start with non-finite energy, or a model too large for
                the budget.
        """
        caller = "HMC.fit"
        pyro_mcmc = require("pyro.infer.mcmc", "bayes", caller)
        threads = self._threads()
        try:
            with eval_mode(self.model), torch.random.fork_rng(devices=[]):
                self._bind(caller, x, target)
                gen = torch.Generator().manual_seed(self.seed)
                theta0 = self._starts(gen)
                energy = self.posterior.energy_and_grad(theta0)[0]
                if not bool(torch.isfinite(energy).all()):
                    bad = int((~torch.isfinite(energy)).nonzero()[0])
                    raise ValueError(
                        f"{caller}: expected every chain to start at a finite posterior "
                        f"density, but got energy {float(energy[bad])!r} for chain {bad}. "
                        "Start from a trained model (init='model' or a list of models)."
                    )
                self._check_budget(caller, theta0)
                start = time.perf_counter()
                run = self._run(pyro_mcmc, theta0, gen)
                self._last, self._gen = run, gen
                run.draws = self.posterior.complete(run.draws, gen)
                wall = time.perf_counter() - start
        finally:
            torch.set_num_threads(threads)
        self._draws = run.draws  # (K, S, Q)
        self._record(caller, run, wall)
        return self

    def extend(self, samples: int) -> HMC:
        """Continue every chain for ``samples`` more kept draws (``samples * thin`` iterations).

        The chains go on from their last states with the adapted step size and
        metric, without another warm-up: they are the same Markov chains, only
        longer (for ``marginalize=False`` exactly the draws one longer run
        gives). Use it when R-hat or the ESS are not yet good enough. Only
        ``sampler="hmc"``.

        Args:
            samples: Kept draws to add per chain.

        Returns:
            ``self``, with ``samples`` increased and the diagnostics (and
            :attr:`fit_time_s`) covering the whole run; the predictive R-hat
            is recomputed by the next :meth:`predict`.

        Raises:
            RuntimeError: If the sampler was not fitted.
            ValueError: If ``sampler="nuts"`` (pyro's chains cannot be resumed).
        """
        caller = "HMC.extend"
        n = check_int(caller, samples, "samples")
        last, gen, draws = self._last, self._gen, self.draws  # draws raises if unfitted
        if self.sampler != "hmc" or last is None or last.final is None or gen is None:
            raise _fail(
                ValueError,
                caller,
                "sampler='hmc' (chains that can be resumed)",
                self.sampler,
                "Fit with sampler='hmc', or fit again with more samples.",
            )
        threads = self._threads()
        try:
            with eval_mode(self.model), torch.random.fork_rng(devices=[]):
                start = time.perf_counter()
                more = sample_chains(
                    self.posterior.energy_and_grad,
                    last.final,
                    warmup=0,
                    samples=n,
                    generator=gen,
                    thin=self.thin,
                    trajectory_length=self.trajectory_length,
                    max_steps=self.max_steps,
                    target_accept=self.target_accept,
                    inverse_mass=last.inverse_mass,
                    step_size=last.step_size[0],
                    start_iteration=last.iterations,
                )
                self._last = more
                more.draws = self.posterior.complete(more.draws, gen)
                wall = time.perf_counter() - start
        finally:
            torch.set_num_threads(threads)
        before, self.samples = self.samples, self.samples + n
        self._draws = torch.cat([draws, more.draws], 1)
        old = self.diagnostics
        assert old is not None  # set with the draws
        merged = ChainRun(
            draws=self._draws,
            step_size=old.step_size,
            inverse_mass=more.inverse_mass,
            divergences=[a + b for a, b in zip(old.divergences, more.divergences)],
            accept_rate=[
                (a * before + b * n) / self.samples
                for a, b in zip(old.accept_rate, more.accept_rate)
            ],
            gradient_evaluations=old.gradient_evaluations + more.gradient_evaluations,
            mean_steps=(old.mean_steps * before + more.mean_steps * n) / self.samples,
        )
        self._record(caller, merged, old.wall_time_s + wall, old.extensions + 1, stacklevel=3)
        return self

    def _run(self, pyro_mcmc: Any, theta0: torch.Tensor, gen: torch.Generator) -> ChainRun:
        if self.sampler == "nuts":
            return sample_nuts(
                pyro_mcmc,
                self.posterior.energy,
                list(theta0),
                warmup=self.warmup,
                samples=self.samples,
                thin=self.thin,
                seed=self.seed,
                max_steps=self.max_steps,
                target_accept=self.target_accept,
            )
        scale = torch.full((self.posterior.dim,), self.prior_std**2, dtype=torch.float64)
        if self.posterior.samples_noise:
            scale[-1] = 1.0  # log tau: unit scale until adapted
        return sample_chains(
            self.posterior.energy_and_grad,
            theta0,
            warmup=self.warmup,
            samples=self.samples,
            generator=gen,
            thin=self.thin,
            trajectory_length=self.trajectory_length,
            max_steps=self.max_steps,
            target_accept=self.target_accept,
            inverse_mass=scale,
        )

    def _record(
        self, caller: str, run: ChainRun, wall: float, extensions: int = 0, stacklevel: int = 4
    ) -> None:
        """Diagnostics of ``run``; warnings point ``stacklevel`` frames up (the user's call)."""
        rhat, ess = summarize_draws(run.draws)
        self.diagnostics = HMCDiagnostics(
            chains=self.chains,
            samples=self.samples,
            warmup=self.warmup,
            parameters=int(run.draws.shape[-1]),
            rhat=rhat,
            ess=ess,
            divergences=run.divergences,
            step_size=run.step_size,
            gradient_evaluations=run.gradient_evaluations,
            wall_time_s=wall,
            sampler=self.sampler,
            thin=self.thin,
            accept_rate=run.accept_rate,
            mean_steps=run.mean_steps,
            extensions=extensions,
        )
        self.fit_time_s = wall
        self.diagnostics.check(caller, "parameters", rhat, ess, stacklevel=stacklevel)

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
        return self.posterior.noise_var(self.draws.reshape(-1, self.draws.shape[-1]))

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
            batch_size: Rows per forward call.
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
        rows = []
        with eval_mode(self.model), torch.no_grad():
            for i in range(0, x.shape[0], bs):
                chunks = [
                    self.posterior.outputs(flat[j : j + PREDICT_CHUNK], x[i : i + bs])
                    for j in range(0, flat.shape[0], PREDICT_CHUNK)
                ]
                rows.append(torch.cat(chunks))  # (S, n, ...)
        stacked = torch.cat(rows, 1)  # (S, N, ...)
        if self.likelihood == "classification":
            stacked = torch.softmax(stacked, -1)
            result = MCResult.from_samples(stacked, keep_samples=keep_samples)
        else:
            nv = self.noise_var
            assert nv is not None  # regression always has a noise variance
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
        assert self.diagnostics is not None  # set with the draws
        self.diagnostics.predictive_rhat, self.diagnostics.predictive_ess = rhat, ess
        self.diagnostics.check(caller, "predictive", rhat, ess)
        result.extras.update(method="hmc", forward_passes=int(flat.shape[0]), chains=k)
        return result

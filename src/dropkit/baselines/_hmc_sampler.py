"""Hamiltonian Monte Carlo with every chain advancing together, vectorised over chains.

All ``K`` chains take the same number of leapfrog steps with one shared step
size each iteration, so one potential-and-gradient call evaluates every chain
(one batched forward and backward of the model instead of ``K``). Warm-up adapts:

* the step size by dual averaging on the chains' mean acceptance probability
  (Hoffman and Gelman, 2014), restarted after each metric update;
* a diagonal metric (inverse mass = per-parameter posterior variance) in
  windows that double in length (Stan's schedule: a 15% initial buffer,
  windows from 25 iterations, a 10% final buffer). The variance is the
  within-chain variance pooled over chains, which is what a chain's moves
  must span; pooling the chains' spread would count the distance between
  posterior modes (a network's hidden units can swap) as width.

The trajectory length is fixed in units of the adapted posterior standard
deviation and jittered each iteration (``u * trajectory_length`` with ``u``
from the base-2 van der Corput sequence, shared by all chains), which avoids
the periodicities of a fixed length (Neal, 2011, section 5.4.2.3). Each
iteration is an exact Metropolis-corrected HMC transition, so every chain
keeps the posterior invariant after warm-up. A proposal whose energy error
exceeds 1000 or is not finite is rejected and counted as a divergence.

Why not NUTS: its trees differ in depth from chain to chain, so chains cannot
share one batched gradient call; and on the UCI networks of ``bench bayes`` its
trees hit any practical depth limit (BENCHMARKS.md has the measurements that
made this the default).

References:
    Neal (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC.
    Hoffman, Gelman (2014). The No-U-Turn sampler. JMLR (dual averaging).
    Stan Development Team. Stan Reference Manual, "HMC algorithm parameters"
    (windowed metric adaptation).
    Hoffman, Radul, Sountsov (2021). An adaptive MCMC scheme for setting
    trajectory lengths in Hamiltonian Monte Carlo. AISTATS (jittered lengths
    shared across many parallel chains).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

EnergyAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

DIVERGENCE = 1000.0
"""An energy error above this (or not finite) is a divergent transition."""


@dataclass
class ChainRun:
    """What :func:`sample_chains` returns.

    Attributes:
        draws: Kept draws ``(K, S, Q)``.
        step_size: Adapted leapfrog step size per chain (one value shared by
            the vectorised chains).
        inverse_mass: Adapted diagonal inverse mass ``(Q,)``.
        divergences: Divergent transitions after warm-up, per chain.
        accept_rate: Mean acceptance probability after warm-up, per chain.
        gradient_evaluations: Potential-and-gradient evaluations of single
            chains (``K`` per batched call), warm-up included.
        mean_steps: Mean leapfrog steps per iteration after warm-up.
        final: Each chain's last state ``(K, Q)``, where a continuation starts.
        iterations: Iterations run, warm-up included (a continuation's jitter
            sequence picks up from here).
    """

    draws: torch.Tensor
    step_size: list[float]
    inverse_mass: torch.Tensor
    divergences: list[int]
    accept_rate: list[float]
    gradient_evaluations: int
    mean_steps: float
    final: torch.Tensor | None = None
    iterations: int = 0


def van_der_corput(i: int) -> float:
    """The ``i``-th point (from 0) of the base-2 van der Corput sequence in ``(0, 1)``."""
    i += 1
    value, scale = 0.0, 1.0
    while i:
        scale /= 2.0
        value += scale * (i & 1)
        i >>= 1
    return value


def window_ends(warmup: int) -> list[int]:
    """Iterations (exclusive ends) at which the metric is updated during warm-up.

    Stan's schedule scaled to ``warmup``: no update in the first 15% (the chains
    are still moving in) or the last 10% (the step size settles on the final
    metric); in between, windows from 25 iterations that double in length, the
    last one stretched to the end of the slow phase.
    """
    start, stop = int(0.15 * warmup), warmup - int(0.1 * warmup)
    if stop - start < 10:  # too short to estimate a variance: step size only
        return []
    ends, size = [], min(25, stop - start)
    while start < stop:
        end = start + size
        if end + 2 * size > stop:
            end = stop
        ends.append(end)
        start, size = end, size * 2
    return ends


class _DualAveraging:
    """Step-size adaptation of Hoffman and Gelman (2014), section 3.2.1."""

    def __init__(self, step: float, target: float) -> None:
        self.mu = math.log(10.0 * step)
        self.target = target
        self.h_bar = 0.0
        self.log_bar = 0.0
        self.t = 0

    def update(self, accept: float) -> float:
        self.t += 1
        t0, gamma, kappa = 10.0, 0.05, 0.75
        w = 1.0 / (self.t + t0)
        self.h_bar = (1 - w) * self.h_bar + w * (self.target - accept)
        log_step = self.mu - math.sqrt(self.t) / gamma * self.h_bar
        eta = self.t**-kappa
        self.log_bar = eta * log_step + (1 - eta) * self.log_bar
        return math.exp(log_step)

    @property
    def final(self) -> float:
        return math.exp(self.log_bar)


class _Welford:
    """Running per-chain mean and sum of squares, for the pooled within-chain variance."""

    def __init__(self, shape: torch.Size) -> None:
        self.n = 0
        self.mean = torch.zeros(shape, dtype=torch.float64)
        self.m2 = torch.zeros(shape, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def variance(self) -> torch.Tensor:
        """Pooled within-chain variance, shrunk towards 1e-3 as Stan does."""
        k = self.mean.shape[0]
        var = self.m2.sum(0) / max(k * (self.n - 1), 1)
        n = k * self.n
        return (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))


class _Chains:
    """The chains' state and one vectorised HMC transition."""

    def __init__(self, energy_and_grad: EnergyAndGrad, theta: torch.Tensor) -> None:
        self.fn = energy_and_grad
        self.theta = theta.clone()
        self.u, self.grad = energy_and_grad(self.theta)
        self.evaluations = theta.shape[0]

    def transition(
        self,
        step: float,
        steps: int,
        inv_mass: torch.Tensor,
        gen: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One HMC iteration of every chain; returns (acceptance prob, divergent) per chain."""
        k, q = self.theta.shape
        p0 = torch.randn(k, q, generator=gen, dtype=torch.float64) / inv_mass.sqrt()
        theta, grad = self.theta, self.grad
        p = p0 - 0.5 * step * grad
        u = self.u
        for i in range(steps):
            theta = theta + step * inv_mass * p
            u, grad = self.fn(theta)
            if i < steps - 1:
                p = p - step * grad
        p = p - 0.5 * step * grad
        self.evaluations += k * steps
        h0 = self.u + 0.5 * (p0 * p0 * inv_mass).sum(1)
        h1 = u + 0.5 * (p * p * inv_mass).sum(1)
        error = h1 - h0
        divergent = ~torch.isfinite(error) | (error > DIVERGENCE)
        prob = torch.where(divergent, torch.zeros_like(error), torch.exp(-error.clamp_min(0.0)))
        accept = torch.rand(k, generator=gen, dtype=torch.float64) < prob
        self.theta = torch.where(accept[:, None], theta, self.theta)
        self.u = torch.where(accept, u, self.u)
        self.grad = torch.where(accept[:, None], grad, self.grad)
        return prob, divergent

    def initial_step(self, step: float, inv_mass: torch.Tensor, gen: torch.Generator) -> float:
        """Double or halve until one step's acceptance crosses 1/2 (Hoffman and Gelman)."""
        saved = (self.theta, self.u, self.grad)

        def accept(s: float) -> float:
            prob, _ = self.transition(s, 1, inv_mass, gen)
            self.theta, self.u, self.grad = saved
            return float(prob.mean())

        up = accept(step) > 0.5
        for _ in range(100):
            nxt = step * 2.0 if up else step / 2.0
            if (accept(nxt) > 0.5) != up:
                return nxt if not up else step
            step = nxt
        return step


def sample_chains(
    energy_and_grad: EnergyAndGrad,
    theta0: torch.Tensor,
    *,
    warmup: int,
    samples: int,
    generator: torch.Generator,
    thin: int = 1,
    trajectory_length: float = 2.0,
    max_steps: int = 1023,
    target_accept: float = 0.8,
    inverse_mass: torch.Tensor | None = None,
    step_size: float | None = None,
    start_iteration: int = 0,
) -> ChainRun:
    """Run ``K`` chains of HMC together from ``theta0`` and keep every ``thin``-th draw.

    With ``warmup=0``, ``step_size`` and ``inverse_mass`` given, it continues
    earlier chains (``theta0`` = their ``final``) without adapting anything:
    the continued chains are the same Markov chains, only longer.

    Args:
        energy_and_grad: ``(K, Q) -> (energies (K,), gradients (K, Q))``.
        theta0: Starting points, one row per chain (float64, finite energy).
        warmup: Adaptation iterations, discarded.
        samples: Kept draws per chain (``samples * thin`` iterations).
        generator: Source of the momenta and the accept draws.
        thin: Keep one iteration in ``thin``.
        trajectory_length: Longest trajectory, in adapted posterior standard
            deviations (each iteration uses a jittered fraction of it).
        max_steps: Most leapfrog steps in one iteration.
        target_accept: Mean acceptance probability the step size aims at.
        inverse_mass: Starting diagonal inverse mass ``(Q,)`` (default ones).
        step_size: Starting step size (default: found by the heuristic).
        start_iteration: Index of the first iteration in the jitter sequence.

    Shape:
        - theta0: ``(K, Q)``.
        - draws: ``(K, samples, Q)``.

    Returns:
        The :class:`ChainRun`.
    """
    k, q = theta0.shape
    chains = _Chains(energy_and_grad, theta0.double())
    inv_mass = torch.ones(q, dtype=torch.float64) if inverse_mass is None else inverse_mass.double()
    step = chains.initial_step(0.1, inv_mass, generator) if step_size is None else step_size
    adapt = _DualAveraging(step, target_accept)
    ends = window_ends(warmup)
    first = int(0.15 * warmup)
    window = _Welford(theta0.shape)
    draws = torch.empty(k, samples, q, dtype=torch.float64)
    divergences = torch.zeros(k, dtype=torch.int64)
    accepted = torch.zeros(k, dtype=torch.float64)
    kept_steps = 0
    for it in range(warmup + samples * thin):
        jitter = van_der_corput(start_iteration + it)
        steps = max(1, min(max_steps, math.ceil(jitter * trajectory_length / step)))
        prob, divergent = chains.transition(step, steps, inv_mass, generator)
        if it < warmup:
            step = adapt.update(float(prob.mean()))
            if first <= it < (ends[-1] if ends else 0):
                window.add(chains.theta)
            if ends and it + 1 == ends[0]:
                ends.pop(0)
                inv_mass = window.variance()
                window = _Welford(theta0.shape)
                step = chains.initial_step(adapt.final, inv_mass, generator)
                adapt = _DualAveraging(step, target_accept)
            if it + 1 == warmup:
                step = adapt.final
            continue
        j = it - warmup
        divergences += divergent.long()
        accepted += prob
        kept_steps += steps
        if (j + 1) % thin == 0:
            draws[:, j // thin] = chains.theta
    iterations = max(samples * thin, 1)
    return ChainRun(
        draws=draws,
        step_size=[step] * k,
        inverse_mass=inv_mass,
        divergences=[int(v) for v in divergences],
        accept_rate=[float(v) / iterations for v in accepted],
        gradient_evaluations=chains.evaluations,
        mean_steps=kept_steps / iterations,
        final=chains.theta.clone(),
        iterations=start_iteration + warmup + samples * thin,
    )

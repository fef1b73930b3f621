"""pyro-ppl's No-U-Turn sampler as the second engine of :class:`~dropkit.baselines.HMC`.

One chain after another (seeds ``seed + k``), which keeps pyro's
multiprocessing out; each adapts its own step size and diagonal mass matrix.
The potential is handed to NUTS directly (``potential_fn``), not compiled:
pyro's ``jit_compile=True`` traces a pyro model with ``torch.jit.trace``, which
torch 2.14 deprecates with a ``FutureWarning`` (an error under warnings-as-
errors), and it was not faster here (BENCHMARKS.md).

References:
    Hoffman, Gelman (2014). The No-U-Turn sampler. JMLR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from dropkit.baselines._hmc_sampler import ChainRun


def tree_depth(max_steps: int) -> int:
    """The NUTS depth whose full tree takes at most ``max_steps`` leapfrog steps."""
    return max(1, int(math.floor(math.log2(max_steps + 1))))


def sample_nuts(
    pyro_mcmc: Any,
    energy: Callable[[torch.Tensor], torch.Tensor],
    starts: list[torch.Tensor],
    *,
    warmup: int,
    samples: int,
    thin: int,
    seed: int,
    max_steps: int,
    target_accept: float,
) -> ChainRun:
    """Run one NUTS chain per start, one after another.

    Args:
        pyro_mcmc: The ``pyro.infer.mcmc`` module.
        energy: ``(1, Q) -> (1,)`` potential energy, differentiable.
        starts: One ``(Q,)`` start per chain.
        warmup: Adaptation iterations per chain.
        samples: Kept draws per chain.
        thin: Keep one iteration in ``thin``.
        seed: Chain ``k`` runs with torch seed ``seed + k``.
        max_steps: Most leapfrog steps per iteration (sets the tree depth).
        target_accept: Acceptance probability the step size aims at.

    Returns:
        A :class:`ChainRun` (``inverse_mass`` of the last chain).
    """
    counter = [0]

    def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
        counter[0] += 1
        return energy(params["theta"][None])[0]

    draws, steps, divergences, accept = [], [], [], []
    inv_mass = torch.ones(starts[0].numel(), dtype=torch.float64)
    for k, theta0 in enumerate(starts):
        torch.manual_seed(seed + k)
        kernel = pyro_mcmc.NUTS(
            potential_fn=potential,
            max_tree_depth=tree_depth(max_steps),
            target_accept_prob=target_accept,
        )
        mcmc = pyro_mcmc.MCMC(
            kernel,
            num_samples=samples * thin,
            warmup_steps=warmup,
            initial_params={"theta": theta0},
            disable_progbar=True,
        )
        mcmc.run()
        chain = mcmc.get_samples()["theta"].detach().double()
        draws.append(chain[thin - 1 :: thin])
        steps.append(float(kernel.step_size))
        divergences.append(len(mcmc.diagnostics()["divergences"]["chain 0"]))
        accept.append(float(mcmc.diagnostics()["acceptance rate"]["chain 0"]))
        inv_mass = kernel.inverse_mass_matrix[("theta",)].detach().double().clone()
    return ChainRun(
        draws=torch.stack(draws),
        step_size=steps,
        inverse_mass=inv_mass,
        divergences=divergences,
        accept_rate=accept,
        gradient_evaluations=counter[0],
        mean_steps=float("nan"),
    )

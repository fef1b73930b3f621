"""The posterior that :class:`~dropkit.baselines.HMC` samples, evaluated for many chains at once.

``theta`` is a flat float64 vector of every parameter of the model (in
``named_parameters()`` order), followed by the log noise precision ``log tau``
when a regression samples its noise. The potential energy is the negative log
posterior up to a constant:

* prior: ``N(0, prior_std**2)`` on every parameter;
* regression: Gaussian likelihood with precision ``tau`` (``1 / noise_std**2``
  when it is known; otherwise ``tau ~ Gamma(a, b)`` in log space, so the
  Jacobian adds ``log tau``);
* classification: categorical likelihood of the model's logits.

Every evaluation takes ``K`` parameter vectors ``(K, Q)`` and calls the model
once, vectorised over chains with ``torch.func.vmap`` of
``torch.func.functional_call``: the model object is never modified (its
parameters, buffers and flags stay as they were), and the chains' gradients
come from one backward pass of the summed energies, since chains share no
parameters.

References:
    Neal (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, vmap

NOISE_PRIOR = (1.0, 0.1)
"""Shape and rate of the Gamma prior on the noise precision when it is sampled."""


class Posterior:
    """Potential energy, gradients and outputs of a model's weight posterior.

    Args:
        model: The network; read, never modified.
        likelihood: ``"regression"`` or ``"classification"``.
        prior_std: Standard deviation of the Gaussian prior on every parameter.
        noise_std: Known regression noise, or ``None`` to sample ``log tau``.

    Shape:
        - theta: ``(K, Q)`` with ``Q = P`` parameters (``P + 1`` when the
          noise precision is sampled); ``dim`` is ``Q``.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: str,
        prior_std: float,
        noise_std: float | None,
    ) -> None:
        self.model = model
        self.likelihood = likelihood
        self.prior_var = prior_std**2
        self.noise_std = noise_std
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.num_parameters = sum(self.sizes)
        self.samples_noise = likelihood == "regression" and noise_std is None
        self.dim = self.num_parameters + int(self.samples_noise)
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    # ---------------------------------------------------------------- layout
    @staticmethod
    def flatten(model: nn.Module) -> torch.Tensor:
        """A model's parameters as one float64 vector ``(P,)``."""
        return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])

    def _buffers(self) -> dict[str, torch.Tensor]:
        return {
            name: buf.double() if buf.is_floating_point() else buf
            for name, buf in self.model.named_buffers()
        }

    def outputs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The model's output for every parameter vector: ``(K, P) -> (K, N, ...)``.

        ``theta`` may hold the noise column too; only the first ``P`` count.
        """
        parts = torch.split(theta[:, : self.num_parameters], self.sizes, dim=1)
        params = {
            name: part.reshape(part.shape[0], *shape)
            for name, part, shape in zip(self.names, parts, self.shapes)
        }
        buffers = self._buffers()

        def one(p: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.model, {**p, **buffers}, (x,))

        return vmap(one)(params)

    # ---------------------------------------------------------------- energy
    def bind(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fix the training data (float64 inputs; checked targets)."""
        self.x, self.y = x, y

    def energy(self, theta: torch.Tensor) -> torch.Tensor:
        """Potential energy (negative log posterior + const) per chain: ``(K, Q) -> (K,)``."""
        if self.x is None or self.y is None:
            raise RuntimeError("Posterior.energy: call bind(x, y) first.")
        w = theta[:, : self.num_parameters]
        prior = 0.5 * (w * w).sum(1) / self.prior_var
        f = self.outputs(theta, self.x)  # (K, N, ...)
        if self.likelihood == "classification":
            k, n, c = f.shape
            target = self.y.expand(k, n).reshape(-1)
            nll = torch.nn.functional.cross_entropy(
                f.reshape(-1, c), target, reduction="none"
            ).view(k, n)
            return prior + nll.sum(1)
        sq = ((self.y - f) ** 2).reshape(f.shape[0], -1).sum(1)
        if not self.samples_noise:
            assert self.noise_std is not None  # set whenever noise is not sampled
            return prior + 0.5 * sq / self.noise_std**2
        a, b = NOISE_PRIOR
        log_tau = theta[:, -1]
        n_out = self.y.numel()
        return prior + 0.5 * log_tau.exp() * sq - (0.5 * n_out + a) * log_tau + b * log_tau.exp()

    def energy_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``(K,)`` and their gradients ``(K, Q)``, detached."""
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_(True)
            u = self.energy(leaf)
            (grad,) = torch.autograd.grad(u.sum(), leaf)
        return u.detach(), grad

    # ---------------------------------------------------------------- starts
    def start(self, flat: torch.Tensor) -> torch.Tensor:
        """A chain's start from model parameters ``(P,)``: appends ``log tau`` when sampled.

        The noise precision starts at the inverse mean squared residual of
        those parameters (clamped to ``[1e-4, 1e4]``).
        """
        if not self.samples_noise:
            return flat
        assert self.x is not None and self.y is not None  # bound before sampling
        with torch.no_grad():
            f = self.outputs(flat[None], self.x)[0]
            resid = float(((self.y - f) ** 2).mean())
        tau0 = 1.0 / min(max(resid, 1e-4), 1e4)
        return torch.cat([flat, flat.new_tensor([math.log(tau0)])])

    def complete(self, draws: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Full parameter draws from sampled ones (here the same: every parameter is sampled)."""
        return draws

    def noise_var(self, draws: torch.Tensor) -> torch.Tensor | None:
        """Noise variance per draw ``(S,)`` from flat draws ``(S, Q)``; ``None`` for classes."""
        if self.likelihood == "classification":
            return None
        if not self.samples_noise:
            assert self.noise_std is not None  # set whenever noise is not sampled
            return torch.full((draws.shape[0],), self.noise_std**2, dtype=torch.float64)
        return torch.exp(-draws[:, -1])

"""The weight posterior of a regression network with its last linear layer integrated out.

For a network ``f(x) = phi(x; w_body) @ W + b`` with a Gaussian prior
``N(0, prior_std**2)`` on every weight and Gaussian noise of precision ``tau``,
the last layer given ``(w_body, tau)`` is Bayesian linear regression on the
features ``Phi`` (with a column of ones for the bias), whose evidence is
closed-form: each output column ``y`` is ``N(0, prior_std**2 Phi Phi' + I / tau)``.
With ``A = tau Phi'Phi + I / prior_std**2`` (``F x F``, ``F`` = features + 1)
and ``B = Phi'Y``, the negative log evidence of the ``D`` columns is (up to a
constant)::

    -N D / 2 log tau + D / 2 log|A| + tau / 2 sum(Y * Y) - tau**2 / 2 tr(B' A^-1 B)

(Woodbury's identity and the matrix determinant lemma; one Cholesky factor of
``A`` per chain). HMC then samples ``(w_body, log tau)`` only, and every kept
draw receives its last layer from the exact conditional
``N(tau A^-1 B, A^-1)``: the joint draws are from the same posterior as plain
HMC on every weight (a collapsed, Rao-Blackwellised sampler), while the
directions that the data pin down hardest (the output layer) and the ridges
along which a hidden unit's input and output weights trade scale leave the
sampled space. BENCHMARKS.md measures what that buys.

References:
    Bishop (2006). Pattern Recognition and Machine Learning, section 3.5
    (the evidence of Bayesian linear regression).
    Snoek et al. (2015). Scalable Bayesian optimization using deep neural
    networks. ICML (a network's last layer as Bayesian linear regression).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.func import functional_call, vmap

from dropkit.baselines._hmc_posterior import NOISE_PRIOR, Posterior


def linear_last(model: nn.Module) -> tuple[nn.Sequential, nn.Linear] | None:
    """``(body, last)`` when ``model`` is an ``nn.Sequential`` ending in an ``nn.Linear``.

    Dropout and ``nn.Identity`` after the last linear layer are allowed (both
    are the identity in eval mode). The body keeps the model's child names, so
    its parameters are named as in the model. ``None`` when the model has
    another form, or the last layer shares a parameter with the body.
    """
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model._modules.items())
    i = len(children) - 1
    while i >= 0 and isinstance(children[i][1], (nn.Identity, nn.modules.dropout._DropoutNd)):
        if any(True for _ in children[i][1].parameters()):
            return None
        i -= 1
    last = children[i][1] if i >= 1 else None
    if not isinstance(last, nn.Linear) or type(last) is not nn.Linear:  # subclasses may differ
        return None
    body = nn.Sequential(OrderedDict((k, m) for k, m in children[:i] if m is not None))
    shared = {id(p) for p in body.parameters()} & {id(p) for p in last.parameters()}
    return (body, last) if not shared else None


class CollapsedPosterior(Posterior):
    """:class:`Posterior` of a regression ``nn.Sequential`` with its last layer integrated out.

    The sampled vector ``theta`` holds the body's parameters (and ``log tau``
    when the noise is sampled); :meth:`complete` turns sampled draws into full
    parameter vectors, laid out as for :class:`Posterior`.

    Args:
        model: An ``nn.Sequential`` accepted by :func:`linear_last`.
        prior_std: Standard deviation of the Gaussian prior on every weight.
        noise_std: Known noise, or ``None`` to sample ``log tau``.
    """

    def __init__(self, model: nn.Module, prior_std: float, noise_std: float | None) -> None:
        super().__init__(model, "regression", prior_std, noise_std)
        split = linear_last(model)
        if split is None:
            raise ValueError(
                "HMC: expected an nn.Sequential ending in an nn.Linear (dropout after it "
                f"allowed) to integrate its last layer out, but got {type(model).__name__}. "
                "Pass marginalize=False."
            )
        self.body, last = split
        self.out_features = last.out_features
        self.has_bias = last.bias is not None
        self.features = last.in_features + int(self.has_bias)
        self.last_size = last.weight.numel() + (last.bias.numel() if self.has_bias else 0)
        self.body_size = self.num_parameters - self.last_size
        named = list(self.body.named_parameters())
        self.body_names = [n for n, _ in named]
        self.body_shapes = [p.shape for _, p in named]
        self.body_sizes = [p.numel() for _, p in named]
        self.dim = self.body_size + int(self.samples_noise)

    # ------------------------------------------------------------------ pieces
    def _phi(self, body: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Features with a ones column for the bias: ``(K, Pb) -> (K, N, F)``."""
        parts = torch.split(body, self.body_sizes, dim=1)
        params = {
            name: part.reshape(part.shape[0], *shape)
            for name, part, shape in zip(self.body_names, parts, self.body_shapes)
        }
        buffers = {
            name: buf.double() if buf.is_floating_point() else buf
            for name, buf in self.body.named_buffers()
        }

        def one(p: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(self.body, {**p, **buffers}, (x,))

        phi = vmap(one)(params) if params else self.body(x).expand(body.shape[0], -1, -1)
        phi = phi.reshape(phi.shape[0], phi.shape[1], -1)
        if self.has_bias:
            phi = torch.cat([phi, phi.new_ones(*phi.shape[:2], 1)], 2)
        return phi

    def _tau(self, theta: torch.Tensor) -> torch.Tensor:
        if self.samples_noise:
            return theta[:, -1].exp()
        assert self.noise_std is not None  # set whenever noise is not sampled
        return theta.new_full((theta.shape[0],), 1.0 / self.noise_std**2)

    def _linear_posterior(
        self, theta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cholesky factor of ``A``, ``B = Phi'Y``, ``A^-1 B`` and ``tau``, per chain."""
        assert self.x is not None and self.y is not None  # bound before use
        phi = self._phi(theta[:, : self.body_size], self.x)  # (K, N, F)
        tau = self._tau(theta)
        eye = torch.eye(self.features, dtype=phi.dtype)
        a = tau[:, None, None] * (phi.transpose(1, 2) @ phi) + eye / self.prior_var
        chol, info = torch.linalg.cholesky_ex(a)
        chol = torch.where((info == 0)[:, None, None], chol, torch.full_like(chol, math.nan))
        b = phi.transpose(1, 2) @ self.y.reshape(self.y.shape[0], -1)  # (K, F, D)
        return chol, b, torch.cholesky_solve(b, chol), tau

    # ------------------------------------------------------------------ energy
    def energy(self, theta: torch.Tensor) -> torch.Tensor:
        """Collapsed potential energy per chain: ``(K, Q) -> (K,)``."""
        if self.x is None or self.y is None:
            raise RuntimeError("Posterior.energy: call bind(x, y) first.")
        w = theta[:, : self.body_size]
        prior = 0.5 * (w * w).sum(1) / self.prior_var
        chol, b, sol, tau = self._linear_posterior(theta)
        y = self.y.reshape(self.y.shape[0], -1)
        n, d = y.shape
        logdet = 2.0 * chol.diagonal(dim1=1, dim2=2).log().sum(1)
        fit = 0.5 * tau * (y * y).sum() - 0.5 * tau**2 * (b * sol).sum((1, 2))
        u = prior + 0.5 * d * logdet + fit - 0.5 * n * d * tau.log()
        if self.samples_noise:
            a_, b_ = NOISE_PRIOR
            u = u - a_ * theta[:, -1] + b_ * tau
        return torch.where(torch.isfinite(u), u, torch.full_like(u, math.inf))

    # ------------------------------------------------------------------ layout
    def start(self, flat: torch.Tensor) -> torch.Tensor:
        """The sampled vector of a chain starting at full parameters ``(P,)``."""
        full = super().start(flat)
        body = full[: self.body_size]
        return torch.cat([body, full[self.num_parameters :]])

    def complete(self, draws: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Full draws ``(K, S, P [+1])``: each body draw with a last layer from its conditional."""
        k, s, _ = draws.shape
        flat = draws.reshape(k * s, -1)
        rows = []
        for i in range(0, flat.shape[0], 256):
            theta = flat[i : i + 256]
            with torch.no_grad():
                chol, _, sol, tau = self._linear_posterior(theta)
                mean = tau[:, None, None] * sol  # (n, F, D)
                z = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
                # A = L L': L'^-1 z has covariance A^-1
                w = mean + torch.linalg.solve_triangular(chol.transpose(1, 2), z, upper=True)
            weight = w[:, : self.features - int(self.has_bias)].transpose(1, 2)  # (n, D, F-1)
            last = [weight.reshape(weight.shape[0], -1)]
            if self.has_bias:
                last.append(w[:, -1])
            rows.append(
                torch.cat([theta[:, : self.body_size], *last, theta[:, self.body_size :]], 1)
            )
        return torch.cat(rows).reshape(k, s, -1)

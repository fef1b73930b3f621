"""Temperature scaling (Guo et al., 2017), also on top of an MC-dropout predictive.

One scalar ``T > 0`` divides the logits: ``softmax(z / T)``. It is fitted on
held-out data by minimising the NLL over ``log T`` (so ``T`` stays positive)
with L-BFGS and a strong-Wolfe line search, in float64. Accuracy never changes.

For an MC-dropout (or ensemble) predictive the "logits" are the log of the MC
mean probabilities, ``z = log E_s p_s`` (:meth:`TemperatureScaling.fit_probs`,
:meth:`TemperatureScaling.transform_probs`): the tempered predictive is
``E_s[p_s]^(1/T)`` renormalised. Probabilities of exactly 0 are floored at the
smallest positive float64 before the log so that the fit stays finite.

References:
    Guo, Pleiss, Sun, Weinberger (2017). On calibration of modern neural
    networks. ICML.
"""

from __future__ import annotations

import torch

from dropkit._validation import TensorLike, renamed_kwargs
from dropkit.metrics._checks import ProbsLike, as_labels, as_probs, as_tensor, check_finite

_TINY = torch.finfo(torch.float64).tiny


def _as_logits(caller: str, logits: TensorLike) -> torch.Tensor:
    z = as_tensor(caller, logits, "logits")
    if z.dim() != 2 or z.shape[0] == 0:
        raise ValueError(
            f"{caller}: expected logits of shape (N, C) with N >= 1, but got "
            f"{tuple(z.shape)}. Average MC samples with fit_probs instead."
        )
    check_finite(caller, z, "logits")
    return z


class TemperatureScaling:
    """Post-hoc calibration by one temperature fitted on validation data.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [4.0, 0.0]])
        >>> ts = TemperatureScaling().fit(z, torch.tensor([0, 1, 1, 0]))
        >>> round(ts.temperature, 3)  # 3 of 4 right: sigmoid(4 / T) = 0.75
        3.641

    References:
        Guo et al. (2017). On calibration of modern neural networks. ICML.
    """

    def __init__(self, *, max_iter: int = 200) -> None:
        self.max_iter = max_iter
        self._log_t: float | None = None

    @property
    def temperature(self) -> float:
        """The fitted temperature ``T``.

        Raises:
            RuntimeError: Before :meth:`fit` or :meth:`fit_probs`.
        """
        if self._log_t is None:
            raise RuntimeError(
                "TemperatureScaling: expected a fitted temperature, but got an unfitted "
                "instance. Call fit(logits, target) or fit_probs(probs, target) first."
            )
        return float(torch.tensor(self._log_t, dtype=torch.float64).exp())

    def _fit(self, z: torch.Tensor, y: torch.Tensor) -> TemperatureScaling:
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS(
            [log_t],
            lr=1.0,
            max_iter=self.max_iter,
            tolerance_grad=1e-12,
            tolerance_change=1e-15,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self._log_t = float(log_t.detach())
        return self

    @renamed_kwargs(labels="target")
    def fit(self, logits: TensorLike, target: TensorLike) -> TemperatureScaling:
        """Fit ``T`` on validation logits by minimising the NLL.

        Args:
            logits: Validation logits ``(N, C)``.
            target: Integer labels ``(N,)``.

        Shape:
            - logits: ``(N, C)``.
            - target: ``(N,)``.

        Returns:
            ``self``.

        Raises:
            ValueError: On non-finite logits, bad labels or shapes.
        """
        z = _as_logits("TemperatureScaling.fit", logits)
        y = as_labels("TemperatureScaling.fit", target, z.shape[0], z.shape[1])
        return self._fit(z, y)

    @renamed_kwargs(labels="target")
    def fit_probs(self, probs: ProbsLike, target: TensorLike) -> TemperatureScaling:
        """Fit ``T`` on the log of (MC mean) probabilities.

        Args:
            probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` (averaged
                first) or an ``MCResult``.
            target: Integer labels ``(N,)``.

        Shape:
            - probs: ``(N, C)`` or ``(S, N, C)``.
            - target: ``(N,)``.

        Returns:
            ``self``.
        """
        p = as_probs("TemperatureScaling.fit_probs", probs)
        y = as_labels("TemperatureScaling.fit_probs", target, p.shape[0], p.shape[1])
        return self._fit(p.clamp_min(_TINY).log(), y)

    def transform(self, logits: TensorLike) -> torch.Tensor:
        """Return the tempered logits ``logits / T`` (float64).

        Shape:
            - logits: ``(N, C)``; output the same.
        """
        t = self.temperature
        return _as_logits("TemperatureScaling.transform", logits) / t

    def predict_proba(self, logits: TensorLike) -> torch.Tensor:
        """Return ``softmax(logits / T)`` (float64).

        Shape:
            - logits: ``(N, C)``; output the same.
        """
        return torch.softmax(self.transform(logits), -1)

    def transform_probs(self, probs: ProbsLike) -> torch.Tensor:
        """Temper (MC mean) probabilities: ``softmax(log(p) / T)`` (float64).

        Args:
            probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` (averaged
                first) or an ``MCResult``.

        Shape:
            - probs: ``(N, C)`` or ``(S, N, C)``; output ``(N, C)``.

        Returns:
            Calibrated probabilities ``(N, C)``.
        """
        t = self.temperature
        p = as_probs("TemperatureScaling.transform_probs", probs)
        return torch.softmax(p.clamp_min(_TINY).log() / t, -1)

    def __repr__(self) -> str:
        t = "unfitted" if self._log_t is None else f"temperature={self.temperature:.4g}"
        return f"TemperatureScaling({t})"

"""Concrete dropout: a drop rate learned by gradient descent.

The Bernoulli keep mask is replaced by its concrete (relaxed Bernoulli)
approximation, which is differentiable in ``p``:

    ``z = sigmoid((logit(p) + log u - log(1 - u)) / t)``, ``u ~ U(0, 1)``,

with temperature ``t = 0.1``; the input is multiplied by ``(1 - z) / (1 - p)``.
``z > 1/2`` exactly when the underlying Bernoulli(``p``) draw says "drop", so
the fraction of (softly) dropped units is ``p``. The variational objective
adds, per wrapped layer,

    ``weight_regularizer * ||W||^2 / (1 - p)
    + dropout_regularizer * D * (p log p + (1 - p) log(1 - p))``

(``D``: number of input features per example), which :meth:`regularization`
returns for the training loss. Gal et al. suggest ``weight_regularizer =
l^2 / N`` and ``dropout_regularizer = 2 / (tau N)`` for ``N`` training points
(prior length-scale ``l``, model precision ``tau``).

References:
    Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017.
    Maddison et al., "The Concrete Distribution", ICLR 2017; Jang et al.,
    "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dropkit._registry import register_dropout
from dropkit._validation import _fail, check_flags, check_generator, check_int
from dropkit.nn._base import DropoutBase, check_tensor

_EPS = 1e-7
_LOGIT_CLAMP = 60.0  # keeps p log p finite at the extremes


def _check_temperature(caller: str, temperature: Any) -> None:
    ok = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if not ok or not math.isfinite(float(temperature)) or not float(temperature) > 0:
        raise _fail(
            ValueError, caller, "temperature > 0", temperature, "Use a temperature such as 0.1."
        )


def _non_negative(caller: str, name: str, value: Any) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0:
        raise _fail(
            ValueError,
            caller,
            f"{name} >= 0 (a finite coefficient)",
            value,
            "Use the paper's scale, about 1e-6 for weight_regularizer (l^2 / N) and "
            "1e-5 for dropout_regularizer (2 / (tau N)); 0 turns the term off.",
        )
    return float(value)


def concrete_dropout(
    x: torch.Tensor,
    p_logit: torch.Tensor,
    temperature: float = 0.1,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Relaxed (concrete) dropout, differentiable in the drop rate.

    The drop rate is learnable, so it is passed as a logit tensor
    ``log(p / (1 - p))`` rather than a float; ``-inf`` means ``p = 0`` and
    returns ``x`` unchanged.

    Args:
        x: Input tensor.
        p_logit: Scalar tensor, ``logit(p)``; gradients flow into it.
        temperature: Relaxation temperature (0.1 in the paper); lower is closer
            to Bernoulli dropout.
        training: Apply dropout; identity when ``False``.
        generator: Optional ``torch.Generator`` for the uniform noise.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Returns:
        ``x * (1 - z) / (1 - p)`` in the dtype of ``x``.

    Raises:
        TypeError: If ``p_logit`` is not a tensor or ``training`` not a bool.
        ValueError: If ``temperature`` is not positive, or ``p_logit`` is NaN,
            ``+inf`` or has more than one element.

    Example:
        >>> x = torch.ones(4)
        >>> concrete_dropout(x, torch.tensor(0.0), training=False) is x
        True
    """
    caller = "concrete_dropout"
    check_tensor(caller, x)
    if not isinstance(p_logit, torch.Tensor):
        raise _fail(
            TypeError,
            caller,
            "p_logit to be a tensor logit(p)",
            p_logit,
            "Pass torch.tensor(math.log(p / (1 - p))) or use ConcreteDropout.",
        )
    _check_temperature(caller, temperature)
    check_generator(caller, generator)
    check_flags(caller, training=training)
    if p_logit.numel() != 1:
        raise _fail(
            ValueError,
            caller,
            "p_logit to be a one-element tensor",
            tuple(p_logit.shape),
            "Pass one logit for the layer, e.g. torch.tensor(-2.2) for p = 0.1.",
        )
    if bool(torch.isnan(p_logit).any() | torch.isposinf(p_logit).any()):
        raise _fail(
            ValueError,
            caller,
            "p_logit finite or -inf (p in [0, 1))",
            float(p_logit.detach()),
            "A NaN logit comes from a diverged optimiser step; lower the learning rate or "
            "reset the rate (ConcreteDropout.p = 0.1).",
        )
    if not training or bool(torch.isneginf(p_logit).all()):
        return x
    dtype = torch.promote_types(x.dtype, p_logit.dtype)
    u = torch.rand(x.shape, dtype=dtype, device=x.device, generator=generator)
    u = u.clamp(_EPS, 1.0 - _EPS)
    logistic = torch.log(u) - torch.log1p(-u)
    relaxed_keep = torch.sigmoid(-(p_logit + logistic) / temperature)  # 1 - z
    return (x * (relaxed_keep / torch.sigmoid(-p_logit))).to(x.dtype)


@register_dropout("concrete")
class ConcreteDropout(DropoutBase):
    """Dropout with a learned rate, wrapping the layer it feeds (Gal et al. 2017).

    ``forward(x)`` returns ``module(concrete_dropout(x))``. The drop rate is a
    parameter (``p_logit``) trained with the model; add
    :meth:`regularization` to the loss. ``.p`` reads the current rate as a
    float; assigning ``.p`` resets it (``p = 0`` freezes the layer as
    identity). Where the data pins the function down (much data, little
    noise) the rate falls; with little data it stays high.

    Args:
        module: The layer fed by the dropped input, e.g. ``nn.Linear``.
        p: Initial drop rate in ``[0, 1)``.
        temperature: Concrete relaxation temperature.
        weight_regularizer: Coefficient of ``||W||^2 / (1 - p)``; about
            ``l^2 / N``.
        dropout_regularizer: Coefficient of the negative dropout entropy
            times the input size; about ``2 / (tau N)``.
        input_dim: Input features per example ``D``; taken from the first
            forward batch (``x[0].numel()``) when ``None``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: whatever ``module`` takes.
        - Output: whatever ``module`` returns.

    Raises:
        TypeError: If ``module`` is not an ``nn.Module``.
        ValueError: If ``temperature`` is not positive, a regularizer is
            negative or not finite, or ``input_dim < 1``.

    Example:
        >>> cd = ConcreteDropout(nn.Linear(3, 1), p=0.5)
        >>> cd.p
        0.5
        >>> _ = cd(torch.zeros(2, 3))
        >>> cd.regularization().shape
        torch.Size([])
    """

    kind = "concrete"

    def __init__(
        self,
        module: nn.Module | None = None,
        p: float = 0.1,
        temperature: float = 0.1,
        weight_regularizer: float = 1e-6,
        dropout_regularizer: float = 1e-5,
        input_dim: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, False, generator)
        if not isinstance(module, nn.Module):
            raise _fail(
                TypeError,
                "ConcreteDropout",
                "module to be a torch.nn.Module to wrap",
                type(module).__name__,
                "Pass the layer the dropout feeds, e.g. ConcreteDropout(nn.Linear(8, 1)) "
                "or create_dropout('concrete', module=layer).",
            )
        caller = "ConcreteDropout"
        _check_temperature(caller, temperature)
        weight_regularizer = _non_negative(caller, "weight_regularizer", weight_regularizer)
        dropout_regularizer = _non_negative(caller, "dropout_regularizer", dropout_regularizer)
        if input_dim is not None:
            input_dim = check_int(caller, input_dim, "input_dim")
        self.module = module
        self.temperature = float(temperature)
        self.weight_regularizer = weight_regularizer
        self.dropout_regularizer = dropout_regularizer
        self.input_dim = input_dim

    @property  # type: ignore[override]
    def p(self) -> float:
        """The current drop rate ``sigmoid(p_logit)`` as a float."""
        return float(torch.sigmoid(self.p_logit.detach()))

    @p.setter
    def p(self, value: float) -> None:
        # `value` was validated by DropoutBase.__setattr__.
        logit = -math.inf if value == 0.0 else math.log(value) - math.log1p(-value)
        if "p_logit" not in self._parameters:
            self.p_logit = nn.Parameter(torch.tensor(logit))
        else:
            with torch.no_grad():
                self.p_logit.fill_(logit)
        # p = 0 is a fixed point (identity); keep optimisers off the -inf logit.
        self.p_logit.requires_grad_(value > 0.0)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Apply the variant to the input (see the class docstring)."""
        if self.input_dim is None:
            self.input_dim = x[0].numel() if x.dim() > 1 else 1
        dropped = concrete_dropout(
            x, self.p_logit, self.temperature, self.training, generator=self.generator
        )
        return self.module(dropped, *args, **kwargs)

    def regularization(self) -> torch.Tensor:
        """Return the concrete-dropout KL term to add to the loss.

        ``weight_regularizer * sum(W^2) / (1 - p) + dropout_regularizer * D *
        (p log p + (1 - p) log(1 - p))``, summed over all parameters of the
        wrapped module.

        Returns:
            A scalar tensor with gradients for ``p_logit`` and the weights.

        Raises:
            RuntimeError: If ``input_dim`` is unknown (no forward pass yet).
        """
        if self.input_dim is None:
            raise _fail(
                RuntimeError,
                "ConcreteDropout.regularization",
                "a known input size",
                None,
                "Run one forward pass first or pass input_dim= to the constructor.",
            )
        logit = self.p_logit.clamp(-_LOGIT_CLAMP, _LOGIT_CLAMP)
        p = torch.sigmoid(logit)
        square = sum(
            (w.pow(2).sum() for w in self.module.parameters()),
            torch.zeros((), dtype=p.dtype, device=p.device),
        )
        weight_term = self.weight_regularizer * square / torch.sigmoid(-logit)
        neg_entropy = p * F.logsigmoid(logit) + (1.0 - p) * F.logsigmoid(-logit)
        return weight_term + self.dropout_regularizer * self.input_dim * neg_entropy

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        return (
            f"p={self.p:.4g}, temperature={self.temperature}, "
            f"weight_regularizer={self.weight_regularizer}, "
            f"dropout_regularizer={self.dropout_regularizer}"
        )

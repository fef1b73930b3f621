"""DropConnect on named weights (``WeightDrop``), built on ``torch.nn.utils.parametrize``.

Each named weight is replaced by a parametrisation that draws a fresh
Bernoulli mask on every forward pass in training (one mask per forward, shared
by all time steps of an RNN) and returns the weight untouched in eval mode.

References:
    Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    Merity, Keskar & Socher, "Regularizing and Optimizing LSTM Language
    Models", ICLR 2018 (weight-dropped LSTM, DropConnect on ``weight_hh``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from dropkit._registry import register_dropout
from dropkit._validation import _fail, check_flags, check_generator, check_names, check_p
from dropkit.kernels import bernoulli_dropout
from dropkit.nn._base import DropoutBase, check_tensor

_ORIGINAL = re.compile(r"^parametrizations\.([^.]+)\.original$")
_CUDNN_CHUNK = "RNN module weights are not part of single contiguous chunk"


def drop_connect(
    weight: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``weight`` with each entry dropped with probability ``p`` (DropConnect).

    Survivors are scaled by ``1/(1-p)``, so the expected weight is unchanged.

    Args:
        weight: A weight tensor.
        p: Drop probability in ``[0, 1]``.
        training: Apply DropConnect; ``weight`` itself when ``False``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Returns:
        The dropped weight (a new tensor; gradients flow to ``weight``).

    Raises:
        TypeError: If ``p`` is not a float.
        ValueError: If ``p`` is out of range.

    Example:
        >>> w = torch.ones(2, 2)
        >>> drop_connect(w, 0.5, training=False) is w
        True
    """
    p = check_p("drop_connect", p, allow_one=True)
    check_generator("drop_connect", generator)
    check_flags("drop_connect", training=training)
    check_tensor("drop_connect", weight, "weight")
    if not training or p == 0.0:
        return weight
    return bernoulli_dropout(weight, p, generator=generator)


class _DropConnect(nn.Module):
    """The parametrisation registered on each dropped weight."""

    def __init__(self, p: float, generator: torch.Generator | None) -> None:
        super().__init__()
        self.p = p
        self.generator = generator
        self.armed = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """Return the weight, dropped in training."""
        if not (self.training and self.armed) or self.p == 0.0:
            return weight
        return bernoulli_dropout(weight, self.p, generator=self.generator)


class _NoFlatten:
    # cuDNN's flatten_parameters copies weights in place into one buffer; on
    # parametrised (computed) weights that would write into autograd outputs.
    def __call__(self) -> None:
        return None


@register_dropout("weight")
class WeightDrop(DropoutBase):
    """DropConnect on the weights of a ``Linear``, ``LSTM``, ``GRU`` or ``RNN`` layer.

    By default drops ``weight`` of ``nn.Linear`` and every hidden-to-hidden
    weight ``weight_hh_l*`` of recurrent layers (the AWD-LSTM recipe: recurrent
    connections are regularised without touching the fast cuDNN kernel's
    inputs per time step). Any module works with explicit ``weights`` names.

    **state_dict keys.** Parametrising renames ``weight`` to
    ``parametrizations.weight.original`` and wrapping adds ``module.``. This
    class translates both ways: ``state_dict()`` returns exactly the keys the
    bare layer had, and ``load_state_dict`` accepts those keys (and the raw
    parametrised ones), so ``model.fc = WeightDrop(model.fc)`` loads and saves
    the model's existing checkpoints. :meth:`unwrap` gives back the plain layer.

    Whole-module pickling (``torch.save(model)``) is not supported by
    ``torch.nn.utils.parametrize``; save ``state_dict()`` instead.

    On CUDA, cuDNN recurrent layers cannot use a flattened weight buffer with
    per-call masks; weight flattening is disabled for the wrapped RNN and the
    "not part of single contiguous chunk" warning is silenced inside
    ``forward`` only.

    Args:
        module: The layer to wrap.
        p: Drop probability for each weight entry, in ``[0, 1]``.
        weights: Parameter names to drop (one name or a list); the defaults
            above when ``None``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: whatever ``module`` takes.
        - Output: whatever ``module`` returns.

    Raises:
        TypeError: If ``module`` is not an ``nn.Module``.
        ValueError: If a name in ``weights`` is not a parameter of ``module``,
            or there is no default for this layer type.

    Example:
        >>> wd = WeightDrop(nn.LSTM(4, 8), p=0.5)
        >>> wd.extra_repr()
        "p=0.5, weights=['weight_hh_l0']"
        >>> list(wd.state_dict()) == list(nn.LSTM(4, 8).state_dict())
        True
    """

    kind = "weight"
    allow_one = True

    def __init__(
        self,
        module: nn.Module | None = None,
        p: float = 0.5,
        weights: Sequence[str] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, False, generator)
        if not isinstance(module, nn.Module):
            raise _fail(
                TypeError,
                "WeightDrop",
                "module to be a torch.nn.Module to wrap",
                type(module).__name__,
                "Pass the layer, e.g. WeightDrop(nn.Linear(4, 4), p=0.5) or "
                "create_dropout('weight', module=layer, p=0.5).",
            )
        # a single string is one name (not its characters)
        names = (
            check_names("WeightDrop", weights, "weights")
            if weights is not None
            else _default_weights(module)
        )
        params = dict(module.named_parameters(recurse=False))
        if not names:
            raise _fail(
                ValueError,
                "WeightDrop",
                "at least one weight name",
                weights,
                f"Pick from {sorted(params)}.",
            )
        for name in names:
            if name not in params:
                raise _fail(
                    ValueError,
                    "WeightDrop",
                    f"weights to name parameters of {type(module).__name__}",
                    name,
                    f"Pick from {sorted(params)}.",
                )
        self.weights = names
        self._key_order = list(module.state_dict().keys())
        for name in names:
            # registration evaluates the parametrisation once (a shape check);
            # disarmed it draws nothing, so construction leaves generators untouched
            drop = _DropConnect(self.p, generator)
            drop.armed = False
            parametrize.register_parametrization(module, name, drop)
            drop.armed = True
        self.is_rnn = isinstance(module, nn.RNNBase)
        if self.is_rnn:
            module.flatten_parameters = _NoFlatten()  # type: ignore[method-assign,assignment]
        self.module = module
        self.register_state_dict_post_hook(_save_plain_keys)
        self.register_load_state_dict_pre_hook(_load_plain_keys)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in ("p", "generator") and "module" in self._modules:
            for drop in self._drops():
                setattr(drop, name, getattr(self, name))

    def _drops(self) -> list[_DropConnect]:
        return [m for m in self.module.modules() if isinstance(m, _DropConnect)]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Apply the variant to the input (see the class docstring)."""
        # cached(): one mask per weight per forward, even if the layer reads
        # the weight several times (RNNs check and re-read their flat weights).
        with parametrize.cached():
            if self.is_rnn and any(p.is_cuda for p in self.module.parameters()):
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_CUDNN_CHUNK)
                    return self.module(*args, **kwargs)
            return self.module(*args, **kwargs)

    def unwrap(self) -> nn.Module:
        """Remove the DropConnect parametrisations and return the plain layer.

        The original (undropped) weights are kept; the returned layer's
        ``state_dict`` has the same keys, in the same order, as before wrapping.
        Do not use this wrapper afterwards.
        """
        for name in self.weights:
            if parametrize.is_parametrized(self.module, name):
                parametrize.remove_parametrizations(self.module, name, leave_parametrized=False)
        # restore the bare layer's parameter order (state_dict key order)
        order = {k: i for i, k in enumerate(self._key_order)}
        params = self.module._parameters
        items = sorted(params.items(), key=lambda kv: order.get(kv[0], len(order)))
        params.clear()
        params.update(items)
        if self.is_rnn:
            del self.module.flatten_parameters
            self.module.flatten_parameters()  # type: ignore[operator]
        return self.module

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        return f"p={self.p}, weights={self.weights}"


def _default_weights(module: nn.Module) -> list[str]:
    if isinstance(module, nn.RNNBase):
        return [n for n in module._flat_weights_names if n.startswith("weight_hh_l")]
    if isinstance(module, nn.Linear):
        return ["weight"]
    raise _fail(
        ValueError,
        "WeightDrop",
        "an nn.Linear, LSTM, GRU or RNN, or explicit weights=[...] names",
        type(module).__name__,
        "Pass weights=['weight'] (the parameter names to drop).",
    )


def _save_plain_keys(
    wd: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    # Rewrite "<prefix>module.parametrizations.W.original" -> "<prefix>W" and
    # "<prefix>module.X" -> "<prefix>X", in the bare layer's key order.
    inner = prefix + "module."
    moved = {}
    for key in [k for k in state_dict if k.startswith(inner)]:
        rel = key[len(inner) :]
        match = _ORIGINAL.match(rel)
        moved[match.group(1) if match else rel] = state_dict.pop(key)
    order = {k: i for i, k in enumerate(getattr(wd, "_key_order", []))}
    for rel in sorted(moved, key=lambda k: order.get(k, len(order))):
        state_dict[prefix + rel] = moved[rel]


def _load_plain_keys(
    wd: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    # Accept the bare layer's keys by mapping them to the wrapped, parametrised ones.
    weights = set(getattr(wd, "weights", ()))
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rel = key[len(prefix) :]
        if rel.startswith("module."):
            continue
        new = f"parametrizations.{rel}.original" if rel in weights else rel
        state_dict[prefix + "module." + new] = state_dict.pop(key)

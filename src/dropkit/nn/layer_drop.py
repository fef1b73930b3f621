"""LayerDrop: skip whole layers of a stack during training.

Each layer of a ``ModuleList`` is skipped with probability ``p`` on every pass
in training mode; evaluation runs every layer. Following Fan et al., kept
layers are not rescaled: the network learns to be robust to missing layers,
which also allows pruning layers at inference.

References:
    Fan, Grave & Joulin, "Reducing Transformer Depth on Demand with Structured
    Dropout", ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from dropkit._registry import register_dropout
from dropkit._validation import _fail, check_flags, check_generator, check_int, check_p
from dropkit.kernels import draw_mask
from dropkit.nn._base import DropoutBase


def layer_drop(
    num_layers: int,
    p: float = 0.1,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> list[bool]:
    """Draw which of ``num_layers`` layers to run (``True``) under LayerDrop.

    Args:
        num_layers: Number of layers in the stack.
        p: Probability of skipping each layer, in ``[0, 1]``.
        training: Draw decisions; every layer runs when ``False``.
        generator: Optional (CPU) ``torch.Generator``.

    Returns:
        One bool per layer, ``True`` where the layer runs.

    Raises:
        TypeError: If ``p`` is not a float or ``num_layers`` not an int.
        ValueError: If ``p`` is out of range or ``num_layers < 0``.

    Example:
        >>> layer_drop(3, p=0.5, training=False)
        [True, True, True]
    """
    p = check_p("layer_drop", p, allow_one=True)
    num_layers = check_int("layer_drop", num_layers, "num_layers", minimum=0)
    check_generator("layer_drop", generator)
    check_flags("layer_drop", training=training)
    if not training or p == 0.0 or num_layers == 0:
        return [True] * num_layers
    mask = draw_mask((num_layers,), p, like=torch.empty(0), generator=generator)
    return [bool(k) for k in (mask != 0).tolist()]


def _shared_seed() -> int:
    # A seed from the global generator, replaced by rank 0's when
    # torch.distributed is initialised, so every rank draws the same stream.
    seed = torch.randint(0, 2**62, (1,), dtype=torch.int64)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        device = torch.device("cpu")
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        seed = seed.to(device)
        dist.broadcast(seed, src=0)
    return int(seed.item())


@register_dropout("layer")
class LayerDrop(DropoutBase, nn.ModuleList):
    """A ``ModuleList`` whose iteration skips each layer with probability ``p`` in training.

    Replace ``self.layers = nn.ModuleList(blocks)`` by
    ``self.layers = LayerDrop(blocks, p=0.1)``; ``for layer in self.layers``
    then runs a random subset in training and every layer in eval. As a
    ``ModuleList`` subclass it keeps the ``state_dict`` keys (``layers.0....``).
    Calling it runs the kept layers in sequence: ``x = layer(x, *args)``.
    Indexing, ``len`` and ``children()`` always see every layer, so use those
    (not iteration) for set-up code that must visit all layers.

    With ``same_on_all_ranks=True`` every ``torch.distributed`` rank skips the
    same layers (needed when layers hold collectives or for DDP's unused-
    parameter bookkeeping): decisions come from a private generator whose seed
    is broadcast from rank 0 the first time it is needed, and every rank draws
    from it in lockstep, one draw per iteration. Without ``torch.distributed``
    initialised it is a private generator seeded from the global one. A
    ``generator`` passed explicitly is used as is (seed it identically on all
    ranks yourself).

    Args:
        layers: The layers, in order.
        p: Probability of skipping each layer, in ``[0, 1]``.
        same_on_all_ranks: Draw identical decisions on every rank.
        generator: Optional CPU ``torch.Generator``.

    Shape:
        - Input: whatever the first layer takes.
        - Output: whatever the last kept layer returns (the input if all skipped).

    Raises:
        TypeError: If ``layers`` is not an iterable of modules.

    Example:
        >>> stack = LayerDrop([nn.Linear(2, 2) for _ in range(3)], p=0.5)
        >>> len(stack), len(list(stack.eval()))
        (3, 3)
        >>> list(stack.state_dict())[:2]
        ['0.weight', '0.bias']
    """

    kind = "layer"
    allow_one = True

    def __init__(
        self,
        layers: Iterable[nn.Module] | None = None,
        p: float = 0.1,
        same_on_all_ranks: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, False, generator)
        if (
            layers is None
            or isinstance(layers, nn.Module)
            and not isinstance(layers, nn.ModuleList)
        ):
            raise _fail(
                TypeError,
                "LayerDrop",
                "layers to be a ModuleList or an iterable of modules",
                type(layers).__name__,
                "Pass the stack, e.g. LayerDrop(nn.ModuleList(blocks), p=0.1).",
            )
        for layer in layers:
            if not isinstance(layer, nn.Module):
                raise _fail(
                    TypeError,
                    "LayerDrop",
                    "every layer to be a torch.nn.Module",
                    type(layer).__name__,
                    "Pass modules only.",
                )
            self.append(layer)
        self.same_on_all_ranks = same_on_all_ranks
        self._rank_generator: torch.Generator | None = None

    def keep(self) -> list[bool]:
        """Draw this pass's decisions: one bool per layer, ``True`` = run."""
        generator = self.generator
        if generator is None and self.same_on_all_ranks:
            if self._rank_generator is None:
                self._rank_generator = torch.Generator().manual_seed(_shared_seed())
            generator = self._rank_generator
        return layer_drop(len(self), self.p, self.training, generator=generator)

    def __iter__(self) -> Iterator[nn.Module]:
        layers = list(self._modules.values())
        return iter([m for m, k in zip(layers, self.keep()) if k and m is not None])

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            layers = list(self._modules.values())[idx]
            return LayerDrop(layers, self.p, self.same_on_all_ranks, self.generator)
        return nn.ModuleList.__getitem__(self, idx)

    def __add__(self, other: Iterable[nn.Module]) -> LayerDrop:
        more = other._modules.values() if isinstance(other, nn.ModuleList) else other
        layers = [*self._modules.values(), *more]
        return LayerDrop(layers, self.p, self.same_on_all_ranks, self.generator)

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """Apply the variant to the input (see the class docstring)."""
        for layer in self:
            x = layer(x, *args, **kwargs)
        return x

    def __repr__(self) -> str:
        # ModuleList's compact repr iterates, which would skip layers.
        return nn.Module.__repr__(self)

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        ranks = ", same_on_all_ranks=True" if self.same_on_all_ranks else ""
        return f"p={self.p}{ranks}"

"""The temporary ``forward`` of each row-keyed dropout site during MC sampling.

Each emulates its module (torch's dropout classes, dropkit's ``Dropout``,
timm's ``DropPath``) or runs it once per row (other dropkit modules with a
``generator``), drawing row ``r``'s mask from the row seed of
:mod:`~dropkit.uncertainty.keyed`; :class:`~dropkit.uncertainty.masks.MaskControl`
installs them and supplies the per-sample generators and row keys.

References:
    Srivastava et al., "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 2014. Klambauer et al., "Self-Normalizing Neural
    Networks" (alpha dropout), NeurIPS 2017. Huang et al., "Deep Networks with
    Stochastic Depth", ECCV 2016.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from dropkit.kernels import draw_seed
from dropkit.uncertainty.keyed import keyed_dropout, keyed_mask, row_seeds


class MaskState(Protocol):
    """What a site's forward reads from :class:`~dropkit.uncertainty.masks.MaskControl`.

    The forwards depend on this interface, not on ``masks`` (which installs
    them), so the two modules do not import each other.
    """

    consistent: bool
    current: list[torch.Generator] | None
    keys: torch.Tensor | None
    unkeyed: set[str]

    def keys_for(self, rows: int, path: str) -> torch.Tensor:
        """Row keys of a sample block of ``rows`` rows at site ``path``."""
        ...

    def row_generator(self, device: torch.device | str) -> torch.Generator:
        """A scratch generator on ``device``, re-seeded per row."""
        ...


_SELU_ALPHA = 1.7580993408473766  # torch's alpha' = scale * alpha of SELU


def split_error(path: str, shape: tuple[int, ...], k: int) -> RuntimeError:
    return RuntimeError(
        f"mc_predict: expected the input of dropout site {path!r} to stack {k} samples "
        f"on dim 0, but got shape {shape}. Batched sampling needs a batch-first "
        "stochastic part; pass strategy='loop'."
    )


def _blocks(x: Any, ctl: MaskState, path: str) -> tuple[int, int]:
    """``(K, M)``: sample blocks in ``x`` and rows per block."""
    k = len(ctl.current or [])
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or k == 0 or x.shape[0] % k:
        raise split_error(path, tuple(getattr(x, "shape", ())), k)
    return k, int(x.shape[0]) // k


def row_seeds_of(x: torch.Tensor, ctl: MaskState, path: str) -> torch.Tensor:
    """One int64 seed per row of ``x``: a site seed per block, keyed by row (``(K * M,)``)."""
    _, m = _blocks(x, ctl, path)
    sigma = torch.stack([draw_seed(g).cpu() for g in ctl.current or []])
    return row_seeds(sigma, ctl.keys_for(m, path))


def torch_forward(
    module: nn.Module, mode: str, alpha: bool, ctl: MaskState, path: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        p = float(module.p)  # type: ignore[arg-type]
        if ctl.current is None or not module.training or p == 0.0:
            return type(module).forward(module, x)
        seeds = row_seeds_of(x, ctl, path)
        if mode == "element" and not alpha:
            return keyed_dropout(x, seeds, p)
        shape = tuple(x.shape)
        if mode == "channel":
            shape = (x.shape[0], x.shape[1] if x.dim() > 1 else 1, *([1] * (x.dim() - 2)))
        keep = keyed_mask(shape, seeds, p, like=x)  # Bernoulli(1-p) / (1-p)
        if not alpha:
            return x * keep
        noise = keep * (1.0 - p)  # back to 0 / 1
        a = 1.0 / math.sqrt((_SELU_ALPHA**2 * p + 1.0) * (1.0 - p))
        b = (noise - 1.0) * (_SELU_ALPHA * a) + _SELU_ALPHA * a * p
        return x * (noise * a) + b

    return forward


def is_timm_drop_path(module: nn.Module) -> bool:
    # timm's DropPath (a naming convention, no timm import): drop_prob, scale_by_keep
    return (
        type(module).__name__ == "DropPath"
        and isinstance(getattr(module, "drop_prob", None), float)
        and isinstance(getattr(module, "scale_by_keep", None), bool)
        and not hasattr(module, "generator")
    )


def path_forward(module: nn.Module, ctl: MaskState, path: str) -> Callable:
    """Row-keyed ``drop_path`` of timm: one keep per row, scaled by ``1 / (1 - drop_prob)``."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        p = float(module.drop_prob)  # type: ignore[arg-type]
        if ctl.current is None or not module.training or p == 0.0:
            return type(module).forward(module, x)
        shape = (x.shape[0], *([1] * (x.dim() - 1)))
        keep = (keyed_mask(shape, row_seeds_of(x, ctl, path), p, like=x) != 0).to(x.dtype)
        if p < 1.0 and module.scale_by_keep:
            keep.div_(1.0 - p)  # timm scales by the exact keep rate
        return x * keep

    return forward


def generator_forward(module: nn.Module, ctl: MaskState, path: str) -> Callable:
    original = type(module).forward

    def call(gen: torch.Generator, *args: Any, **kwargs: Any) -> Any:
        old = module.generator
        setattr(module, "generator", gen)  # noqa: B010 (plain attribute, not a submodule)
        try:
            return original(module, *args, **kwargs)
        finally:
            setattr(module, "generator", old)  # noqa: B010

    def consistent(block: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        # Affine given the mask: out = x * (f(1) - f(0)) + f(0), probed on one row.
        probe = block[:1]
        state = gen.get_state()
        zero = call(gen, torch.zeros_like(probe))
        gen.set_state(state)
        one_ = call(gen, torch.ones_like(probe))
        return block * (one_ - zero) + zero

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if ctl.current is None or not module.training:
            return original(module, x, *args, **kwargs)
        k, m = _blocks(x, ctl, path)
        # rows of dim 0 are not the inputs (extra arguments, a sequence-first layer,
        # another row count): one draw for the whole call, not row-keyed
        whole = bool(args or kwargs) or getattr(module, "batch_first", True) is False
        whole = whole or (not ctl.consistent and ctl.keys is not None and ctl.keys.numel() != m)
        if whole:
            if k > 1:
                raise split_error(path, tuple(x.shape), k)
            ctl.unkeyed.add(path)
            return call(ctl.current[0], x, *args, **kwargs)  # type: ignore[index]
        if ctl.consistent:
            outs = [consistent(b, g) for b, g in zip(x.chunk(k, 0), ctl.current or [])]
            return outs[0] if k == 1 else torch.cat(outs, 0)
        # one forward per row, each with a generator seeded by its row seed
        gen = ctl.row_generator(x.device)
        seeds = row_seeds_of(x, ctl, path).tolist()
        return torch.cat([call(gen.manual_seed(s), x[i : i + 1]) for i, s in enumerate(seeds)])

    return forward

"""Seeded per-sample dropout masks, identical whether samples run in a loop or a batch.

``mc_predict`` draws sample ``s`` with its own ``torch.Generator`` seeded from
``(seed, s)``. While it runs, every active dropout module it can control gets a
temporary ``forward`` that splits its input into the ``K`` sample blocks of the
current call (samples are stacked on dim 0, sample-major) and draws block ``j``'s
mask from the generator of sample ``s_j``. A sample therefore sees the same masks
whether it runs alone (loop), inside a batch of replicated inputs, or after a
cached deterministic prefix, which is what makes those strategies agree: the
same masks, and outputs equal up to floating-point rounding (matrix products of
another shape may round differently in the last bit on some CPUs).

With ``consistent=True`` each generator is re-seeded from ``(seed, s)`` at every
call and a mask of shape ``(1, ...)`` is broadcast over the rows of the block, so
sample ``s`` applies one mask to every input of every batch: the joint samples
that BatchBALD (Kirsch et al., 2019) needs. That requires per-sample masks
shared across inputs, so only controllable sites qualify (sites whose output is
element-wise affine in the input given the mask).

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
    Kirsch, van Amersfoort and Gal, "BatchBALD", NeurIPS 2019.
    Steele, "Fast splittable pseudorandom number generators" (SplitMix64), 2014.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from dropkit.kernels import bernoulli_dropout, draw_mask

_M64 = (1 << 64) - 1
# torch's own dropout classes, emulated here: kind of mask and whether it is alpha.
_TORCH = {
    nn.Dropout: ("element", False),
    nn.Dropout1d: ("channel", False),
    nn.Dropout2d: ("channel", False),
    nn.Dropout3d: ("channel", False),
    nn.AlphaDropout: ("element", True),
    nn.FeatureAlphaDropout: ("channel", True),
}
# Kinds whose output is x * A + B given the mask (probe-able for consistent masks).
_AFFINE = {"element", "spatial", "alpha", "gaussian", "locked", "path", "block", "concrete"}
# Kinds whose randomness is drawn once per call, not per row: replicating the
# input in one batch would make all samples of the call share it.
PER_CALL_KINDS = frozenset({"weight", "embedding", "layer"})
_SELU_ALPHA = 1.7580993408473766  # torch's alpha' = scale * alpha of SELU


def sample_seed(seed: int, sample: int) -> int:
    """Seed of MC sample ``sample`` under base ``seed`` (SplitMix64 mixing).

    Args:
        seed: Base seed of the call.
        sample: Sample index ``s >= 0``.

    Returns:
        A 63-bit seed, statistically independent across ``s``.

    Example:
        >>> sample_seed(0, 0) != sample_seed(0, 1)
        True
    """
    z = (seed * 0x9E3779B97F4A7C15 + (sample + 1) * 0xD1B54A32D192ED03) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


def sample_generator(seed: int, sample: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator for sample ``sample`` (see :func:`sample_seed`)."""
    return torch.Generator(device=device).manual_seed(sample_seed(seed, sample))


def _split_error(path: str, shape: tuple[int, ...], k: int) -> RuntimeError:
    return RuntimeError(
        f"mc_predict: expected the input of dropout site {path!r} to stack {k} samples "
        f"on dim 0, but got shape {shape}. Batched sampling needs a batch-first "
        "stochastic part; pass strategy='loop'."
    )


def _apply_blocks(
    x: torch.Tensor, ctl: MaskControl, path: str, fn: Callable[[torch.Tensor, Any], torch.Tensor]
) -> torch.Tensor:
    """Apply ``fn(block, generator)`` to each sample block of ``x`` (dim 0)."""
    gens = ctl.current or []
    k = len(gens)
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] % k:
        raise _split_error(path, tuple(getattr(x, "shape", ())), k)
    rows = ctl.rows
    outs = []
    for block, gen in zip(x.chunk(k, 0), gens):
        if rows is not None and not ctl.consistent and block.shape[0] == rows.numel():
            # Adaptive sampling dropped some inputs: draw at the full batch size and keep
            # the active rows, so each input's masks do not depend on which others remain.
            full = block.new_zeros((ctl.n_full, *block.shape[1:]))
            full[rows] = block
            outs.append(fn(full, gen).index_select(0, rows))
        else:
            outs.append(fn(block, gen))
    return outs[0] if k == 1 else torch.cat(outs, 0)


def _torch_forward(
    module: nn.Module, mode: str, alpha: bool, ctl: MaskControl, path: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    def one(block: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        p = float(module.p)  # type: ignore[arg-type]
        if mode == "element" and not alpha and not ctl.consistent:
            return bernoulli_dropout(block, p, generator=gen)
        rows = 1 if ctl.consistent else block.shape[0]
        shape: tuple[int, ...] = (rows, *block.shape[1:])
        if mode == "channel":
            shape = (rows, block.shape[1], *([1] * (block.dim() - 2)))
        keep = draw_mask(shape, p, like=block, generator=gen)  # Bernoulli(1-p) / (1-p)
        if not alpha:
            return block * keep
        noise = keep * (1.0 - p)  # back to 0 / 1
        a = 1.0 / math.sqrt((_SELU_ALPHA**2 * p + 1.0) * (1.0 - p))
        b = (noise - 1.0) * (_SELU_ALPHA * a) + _SELU_ALPHA * a * p
        return block * (noise * a) + b

    def forward(x: torch.Tensor) -> torch.Tensor:
        if ctl.current is None or not module.training or float(module.p) == 0.0:  # type: ignore[arg-type]
            return type(module).forward(module, x)
        return _apply_blocks(x, ctl, path, one)

    return forward


def _generator_forward(module: nn.Module, ctl: MaskControl, path: str) -> Callable:
    original = type(module).forward

    def call(gen: torch.Generator, *args: Any, **kwargs: Any) -> Any:
        old = module.generator
        setattr(module, "generator", gen)  # noqa: B010 (plain attribute, not a submodule)
        try:
            return original(module, *args, **kwargs)
        finally:
            setattr(module, "generator", old)  # noqa: B010

    def one(block: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not ctl.consistent:
            return call(gen, block)
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
        if args or kwargs:
            if len(ctl.current) == 1 and ctl.rows is None:
                return call(ctl.current[0], x, *args, **kwargs)
            raise _split_error(path, tuple(getattr(x, "shape", ())), len(ctl.current))
        return _apply_blocks(x, ctl, path, one)

    return forward


class MaskControl:
    """Context manager that routes active dropout sites through per-sample generators.

    Args:
        sites: The active sites (``DropoutSite``) of the MC call.
        seed: Base seed; sample ``s`` uses :func:`sample_seed` ``(seed, s)``.
        consistent: Share each sample's mask across all inputs and batches.

    Attributes:
        controlled: Paths of the sites whose masks are seeded per sample.
        uncontrolled: ``(path, kind)`` of active sites that draw from torch's
            global generator (fused attention dropout, float rate attributes,
            unknown modules): valid MC samples, but not reproduced exactly across
            strategies.
    """

    def __init__(self, sites: Iterable[Any], *, seed: int, consistent: bool = False) -> None:
        self.seed = seed
        self.consistent = consistent
        self.current: list[torch.Generator] | None = None
        self.rows: torch.Tensor | None = None
        self.n_full = 0
        self._gens: dict[tuple[int, str], torch.Generator] = {}
        self._patches: list[tuple[nn.Module, Callable]] = []
        self.controlled: list[str] = []
        self.uncontrolled: list[tuple[str, str]] = []
        seen: set[int] = set()
        for site in sites:
            module = getattr(site, "module", None)
            kind = str(getattr(site, "kind", "element"))
            path = str(getattr(site, "path", "?"))
            control = getattr(site, "control", "module")
            if module is None or control != "module" or kind == "attention":
                self.uncontrolled.append((path, kind))
                continue
            if id(module) in seen:
                continue
            seen.add(id(module))
            if type(module) in _TORCH:
                mode, alpha = _TORCH[type(module)]
                self._patches.append((module, _torch_forward(module, mode, alpha, self, path)))
            elif hasattr(module, "generator") and (not consistent or kind in _AFFINE):
                self._patches.append((module, _generator_forward(module, self, path)))
            else:
                self.uncontrolled.append((path, kind))
                continue
            self.controlled.append(path)
        self._saved: list[tuple[nn.Module, Any]] = []

    @property
    def per_call(self) -> list[str]:
        """Uncontrolled sites whose randomness is per call (no batched sampling)."""
        return [p for p, kind in self.uncontrolled if kind in PER_CALL_KINDS]

    def __enter__(self) -> MaskControl:
        for module, fn in self._patches:
            self._saved.append((module, module.__dict__.get("forward", _MISSING)))
            module.forward = fn  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for module, old in reversed(self._saved):
            if old is _MISSING:
                module.__dict__.pop("forward", None)
            else:
                module.forward = old  # type: ignore[method-assign]
        self._saved.clear()
        self.current = None

    def use(
        self,
        samples: Iterable[int],
        device: torch.device | str = "cpu",
        rows: torch.Tensor | None = None,
        n_full: int = 0,
    ) -> None:
        """Select the generators of the samples stacked in the next forward call.

        Args:
            samples: Sample indices, in the order their blocks are stacked.
            device: Device of the generators (that of the dropout inputs).
            rows: Indices of the inputs still sampled within a batch of
                ``n_full`` (adaptive sampling), or ``None`` for all.
            n_full: Rows of the whole batch.
        """
        self.rows = None if rows is None else rows.to(device)
        self.n_full = n_full
        dev = str(torch.device(device))
        gens = []
        for s in samples:
            key = (s, dev)
            gen = self._gens.get(key)
            if gen is None:
                gen = self._gens[key] = sample_generator(self.seed, s, dev)
            elif self.consistent:
                gen.manual_seed(sample_seed(self.seed, s))
            gens.append(gen)
        self.current = gens

    def release(self) -> None:
        """Stop routing (calls outside MC sampling use the modules' own forward)."""
        self.current = None
        self.rows = None


_MISSING = object()

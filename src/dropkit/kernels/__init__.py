"""Dropout kernels: the single entry point every functional goes through.

Callers use :func:`bernoulli_dropout` (element-wise inverted dropout) and
:func:`draw_mask` (a scaled keep mask for structured variants) and never know
which implementation runs.

Design:
    - **Counter-based generator.** Elements ``2j`` and ``2j + 1`` (logical,
      row-major indices) share the 32-bit word ``hash(seed, j)``, a two-round
      integer hash keyed by ``splitmix64(seed)``; each keeps its element when
      its 16-bit half of the word is ``>= round(p * 2**16)`` (see
      :mod:`dropkit.kernels._hash`). The mask depends on nothing but the seed
      and the index: not on the thread count, the dtype, the memory layout or
      the device.
    - **One seed per call.** The seed is drawn from ``generator`` (the global
      CPU generator when ``None``, also for CUDA tensors) with one
      ``torch.randint`` call, so ``torch.manual_seed`` reproduces every
      mask. :func:`seeded_dropout` takes an explicit seed instead.
    - **Nothing saved for backward but the seed.** Backward runs the same
      kernel on the gradient with the saved seed, which regenerates the mask:
      eager mode keeps it as a Python int (0 tensor bytes), compiled graphs as
      a 0-d tensor (8 bytes). ``F.dropout`` keeps a full-size mask instead.
    - **Small CPU tensors** (fewer than :data:`SMALL` elements, eager mode;
      :data:`SMALL_NO_NUMBA` without numba) go to PyTorch's Bernoulli sampler,
      which is faster there; the device independence of masks holds from that
      size up, and at every size for :func:`seeded_dropout`.
    - **Precision.** ``p`` is quantised to a multiple of ``2**-16``
      (:func:`effective_p`; at most ``2**-17`` away, so rates below ``2**-17``
      drop nothing) and kept elements are scaled by
      ``1 / (1 - effective_p(p))`` rounded to the compute dtype (float64 for
      float64 inputs, float32 otherwise), so the expectation is exact.
      Half-precision inputs are multiplied in float32 and rounded once, as
      PyTorch does.
    - **Backends.** CPU: one fused numba pass over chunks of ``2**16``
      elements on ``torch.get_num_threads()`` Python threads (the compiled
      code releases the GIL; no second OpenMP pool), serial below ``2**17``
      elements per thread; compiled on first use per dtype (in the first
      process only) and cached on disk next to the module, or in numba's user
      cache dir when that is read-only. CUDA: a Triton kernel with the same
      hash. Anything else, or CPU without the ``fast`` extra: the same hash
      in int32 torch ops over blocks of ``2**18`` elements (no mask tensor and
      no per-element random draw; ``dropkit bench kernels`` measures it
      against ``F.dropout``, BENCHMARKS.md has the numbers).
    - **Memory.** Out of place, the first touch of the freshly allocated
      output (one page fault per 4 KiB page) costs more than the arithmetic.
      On Linux, for outputs of 32 MiB and more, each CPU worker maps its
      share with one ``madvise(MADV_POPULATE_WRITE)`` call first (see
      :mod:`dropkit.kernels._memory`; ``DROPKIT_POPULATE=0`` turns it off).
    - **Operators.** ``dropkit::seeded_dropout`` and its in-place twin are
      ``torch.library`` custom ops with a registered autograd formula and fake
      implementations, so ``torch.compile(fullgraph=True)`` traces them.
      Pass ``generator=None`` inside compiled code: a ``Generator`` object
      is not traceable.
    - **Layout.** Outputs have the memory layout ``torch.empty_like`` gives
      (the input's strides when it is dense, e.g. ``channels_last``), as
      ``F.dropout``'s do; masks follow the logical index whatever the
      layout. Non-contiguous inputs, and the broadcast (stride-0) gradient
      of ``y.sum()``, are read in place by the numba kernel, never copied.
    - **Functorch.** Inside ``torch.func`` transforms (``vmap``, ``grad``)
      PyTorch's Bernoulli sampler runs instead, so ``vmap``'s ``randomness``
      modes behave as for ``F.dropout``.

References:
    Srivastava et al., "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 2014. Salmon et al., "Parallel random numbers: as easy
    as 1, 2, 3", SC 2011.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from dropkit.kernels import _ops
from dropkit.kernels._hash import effective_p
from dropkit.kernels._ops import (
    EagerDropout,
    EagerDropoutInplace,
    _backend,
    seeded_dropout_inplace_op,
    seeded_dropout_op,
)

__all__ = [
    "SMALL",
    "SMALL_NO_NUMBA",
    "bernoulli_dropout",
    "draw_mask",
    "draw_seed",
    "effective_p",
    "seeded_dropout",
]


#: CPU tensors with fewer elements than this use PyTorch's own Bernoulli
#: sampler in eager mode: there the fixed per-call cost of the seeded path would
#: exceed F.dropout's whole cost (measured by ``dropkit bench kernels``).
SMALL = 2048
#: The same cutoff when numba is missing: the pure-torch kernel runs a few dozen
#: tensor ops per block, so it needs larger tensors to beat F.dropout.
SMALL_NO_NUMBA = 1 << 15


@functools.lru_cache(maxsize=256)
def _effective_p(p: float, precise: bool) -> float:
    return effective_p(p, precise=precise)


def _small() -> int:
    return SMALL if _backend("numba") is not None else SMALL_NO_NUMBA


def _is_functorch_wrapped(x: torch.Tensor) -> bool:
    """Whether ``x`` is a functorch wrapper (inside ``vmap``, ``grad``, ``jvp``).

    Always False while dynamo traces (it cannot trace the check, and compiled
    code takes the custom-op path anyway).
    """
    if torch.compiler.is_compiling():
        return False
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))


def draw_seed(generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one 64-bit dropout seed as a 0-d int64 tensor (one ``torch.randint``).

    Args:
        generator: Source of randomness; the global CPU generator when ``None``.

    Returns:
        A 0-d ``int64`` tensor on the generator's device.
    """
    device = generator.device if generator is not None else None
    return torch.randint(
        -(1 << 63), (1 << 63) - 1, (), dtype=torch.int64, generator=generator, device=device
    )


def seeded_dropout(
    x: torch.Tensor, p: float, seed: int | torch.Tensor, *, inplace: bool = False
) -> torch.Tensor:
    """Inverted dropout with the mask of an explicit ``seed``.

    The same ``(seed, p, x.shape)`` gives the same mask on every backend,
    dtype, memory layout and thread count, at every size.

    Args:
        x: Input tensor of a floating dtype.
        p: Drop probability in ``[0, 1]``, already validated.
        seed: A Python int or a 0-d int64 tensor.
        inplace: Write the result into ``x``.

    Shape:
        - Input: any.
        - Output: same shape as input, in its memory layout.

    Returns:
        ``x * mask / (1 - effective_p(p))``.

    Example:
        >>> x = torch.ones(1000)
        >>> y32, y64 = seeded_dropout(x, 0.3, 7), seeded_dropout(x.double(), 0.3, 7)
        >>> bool(((y32 == 0) == (y64 == 0)).all())  # the same mask in both dtypes
        True
        >>> round(y32.max().item(), 4)  # kept elements are scaled by 1 / (1 - p)
        1.4286
    """
    if torch.compiler.is_compiling():
        if not isinstance(seed, torch.Tensor):
            seed = torch.tensor(seed, dtype=torch.int64)
        if not inplace:
            return seeded_dropout_op(x, seed, p)
        if torch.is_grad_enabled() and x.requires_grad:
            # a mutating torch.library op has no autograd formula: compute out
            # of place and copy back, which autograd records as usual
            return x.copy_(seeded_dropout_op(x, seed, p))
        seeded_dropout_inplace_op(x, seed, p)
        return x
    s = int(seed.item()) if isinstance(seed, torch.Tensor) else int(seed)
    if inplace:
        return EagerDropoutInplace.apply(x, s, p)
    return EagerDropout.apply(x, s, p)


def bernoulli_dropout(
    x: torch.Tensor,
    p: float,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inverted Bernoulli dropout, always active (callers handle ``training``).

    Draws one seed from ``generator`` and applies :func:`seeded_dropout`; no
    mask is stored for backward (see the module docstring). CPU tensors of
    fewer than :data:`SMALL` elements in eager mode use PyTorch's Bernoulli
    sampler instead, which is faster at that size.

    Args:
        x: Input tensor of any shape and floating dtype.
        p: Drop probability, already validated, in ``[0, 1]``; quantised to
            :func:`effective_p`.
        inplace: Write the result into ``x``.
        generator: Source of randomness; the global CPU generator when ``None``.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Returns:
        ``x * mask / (1 - effective_p(p))`` with ``mask ~ Bernoulli(1 - effective_p(p))``.
        ``x`` itself when ``p == 0``.

    Example:
        >>> x = torch.ones(40, 50)
        >>> y = bernoulli_dropout(x, 0.5, generator=torch.Generator().manual_seed(0))
        >>> sorted(set(y.flatten().tolist()))
        [0.0, 2.0]
    """
    return _drop(x, p, inplace, generator, precise=False)


def _drop(
    x: torch.Tensor,
    p: float,
    inplace: bool,
    generator: torch.Generator | None,
    precise: bool,
) -> torch.Tensor:
    """:func:`bernoulli_dropout`, or its 32-bit structured-mask form when ``precise``.

    ``precise`` is only used by :func:`draw_mask`, on a fresh tensor of ones
    that needs no autograd and is overwritten in place.
    """
    if p == 0.0:
        return x
    if p == 1.0:
        return x.mul_(0.0) if inplace else x * 0.0
    compiling = torch.compiler.is_compiling()
    # ``compiling`` first: _small() may import the numba module, which dynamo
    # refuses to trace (the first dropout of a process inside compiled code).
    # Under functorch transforms (vmap, grad) PyTorch's own sampler runs: it
    # honours vmap's randomness modes, and the kernel's .item() cannot run.
    if not compiling and (
        (x.numel() < _small() and x.device.type == "cpu") or _is_functorch_wrapped(x)
    ):
        q = _effective_p(p, precise)
        if q == 0.0:  # a new tensor, as torch returns for any p > 0
            return x.mul_(1.0) if inplace else x.clone()
        if generator is None:
            return F.dropout(x, q, True, inplace)
        mask = torch.empty_like(x).bernoulli_(1.0 - q, generator=generator).div_(1.0 - q)
        return x.mul_(mask) if inplace else x * mask
    if not precise:
        return seeded_dropout(x, p, draw_seed(generator), inplace=inplace)
    seed = draw_seed(generator)
    if compiling:
        seeded_dropout_inplace_op(x, seed, p, True)
        return x
    return _ops.dropout_(x, int(seed.item()), p, precise=True)


def draw_mask(
    shape: tuple[int, ...],
    p: float,
    *,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return a scaled keep mask ``Bernoulli(1 - p) / (1 - p)`` of ``shape``.

    Used by structured variants (spatial, locked, path, block, alpha ...)
    whose masks are small and whose rates can be tiny (DropBlock seed rates),
    so they use the kernels' precise form: one 32-bit hash word per element,
    ``p`` quantised to ``2**-32`` (``effective_p(p, precise=True)``), the
    same mask on every device. All zeros when ``p == 1``.

    Args:
        shape: Shape of the mask.
        p: Drop probability in ``[0, 1]``.
        like: Tensor whose dtype and device the mask takes.
        generator: Source of randomness; the global CPU generator when ``None``.

    Shape:
        - Output: ``shape``, dtype and device of ``like``.

    Returns:
        A tensor whose entries are ``0`` or ``1 / (1 - effective_p(p))``.
    """
    ones = torch.ones(shape, dtype=like.dtype, device=like.device)
    return _drop(ones, p, True, generator, precise=True)

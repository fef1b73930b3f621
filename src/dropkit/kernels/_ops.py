"""The seeded dropout operators, registered with ``torch.library``.

``dropkit::seeded_dropout(x, seed, p)`` returns ``x * mask(seed) * scale`` and
``dropkit::seeded_dropout_`` writes it into ``x``. Their autograd formula saves
only the 0-d ``seed`` tensor: backward is the same operator applied to the
gradient, which regenerates the identical mask. Fake (meta) implementations
let ``torch.compile(fullgraph=True)`` trace them without graph breaks.

The implementation picks a backend by device: numba on CPU (float32/float64
directly, half precision through a float32 buffer), Triton on CUDA, and a
chunked pure-torch version of the same hash anywhere else (and on CPU when
numba is not installed). All compute the same mask for the same seed.

References:
    Srivastava et al., "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 2014 (inverted dropout).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from dropkit.kernels import _hash

_CPU_DTYPES = (torch.float32, torch.float64)
#: Elements per block of the pure-torch kernel on CPU: large enough to amortise
#: op dispatch, small enough that a block's int32 temporaries stay in cache
#: (chosen by ``dropkit bench kernels`` over 2**15 to 2**20; see BENCHMARKS.md).
TORCH_CHUNK = 1 << 18
_SIGN_BITS = _hash._s32(0x80008000)
#: Non-contiguous tensors with fewer elements go through one contiguous copy:
#: there a copy costs less than the strided kernel's per-call setup (the
#: ``y.sum()`` gradient row of ``dropkit bench kernels`` at 10**4 elements).
STRIDED_MIN = 1 << 16
_backends: dict[str, ModuleType | None] = {}


def _backend(name: str) -> ModuleType | None:
    """Import ``dropkit.kernels._numba`` / ``._triton`` once, or None if unavailable."""
    if name not in _backends:
        dep = "numba" if name == "numba" else "triton"
        mod = None
        if importlib.util.find_spec(dep) is not None:
            mod = importlib.import_module(f"dropkit.kernels._{name}")
        _backends[name] = mod
    return _backends[name]


def _torch_blocks(
    xs: Tensor, os_: Tensor, seed: int, t: int, base: int, chunk: int, precise: bool
) -> None:
    """Hash-and-scale the logical indices ``[base, base + n)`` block by block.

    Each block hashes up to ``chunk // 2`` consecutive pair indices (a power of
    two below ``2**31``: a block never crosses a multiple of it, hence neither
    ``2**31``, the int32 sign, nor ``2**32``, the high word) and reads the two
    16-bit halves of every word as the keep bits of two elements; ``precise``
    hashes every element's own index instead and compares the whole word.
    """
    n = xs.numel()
    k0, k1 = _hash.keys(seed)
    per_word = 1 if precise else 2
    words = chunk // per_word
    j, j_end = base // per_word, -(-(base + n) // per_word)
    size = min(j_end - j, words)
    h = torch.empty(size, dtype=torch.int32, device=xs.device)
    tmp = torch.empty_like(h)
    keep = torch.empty(per_word * size, dtype=torch.bool, device=xs.device)
    st, sc = _hash.signed_threshold(t, precise), _hash.scale(t, precise)
    while j < j_end:
        stop = min((j // words + 1) * words, j_end)
        m = stop - j
        lo = _hash._s32(j)
        hb, tb = h[:m], tmp[:m]
        torch.arange(lo, lo + m, dtype=torch.int32, out=hb)
        _hash.hash_block_(hb, k0, _hash.high_key(k1, j >> 32), tb)
        if precise:
            bits = hb.bitwise_xor_(-(1 << 31))  # unsigned order -> signed order
        else:
            if sys.byteorder == "big":  # the int16 view must list the low half first
                _hash.rotate16_(hb, tb)
            bits = hb.bitwise_xor_(_SIGN_BITS).view(torch.int16)  # both halves
        e0, e1 = max(per_word * j, base), min(per_word * stop, base + n)
        kb = keep[: e1 - e0]
        torch.ge(bits[e0 - per_word * j : e1 - per_word * j], st, out=kb)
        # x * keep is x or 0 exactly; the scalar multiply rounds once, in the
        # same compute precision as the compiled kernels.
        i0, i1 = e0 - base, e1 - base
        torch.mul(xs[i0:i1], kb, out=os_[i0:i1])
        os_[i0:i1].mul_(sc)
        j = stop


def torch_dropout_(
    x: Tensor, out: Tensor, seed: int, t: int, base: int = 0, precise: bool = False
) -> None:
    """Pure-torch kernel: the same hash in int32 tensor ops, block by block.

    Works on any device and dtype; ``x`` and ``out`` are contiguous and may
    alias; ``base`` is the logical index of ``x``'s first element. About 28
    tensor ops per block, each over at most ``2**17`` words: on CPU a block of
    :data:`TORCH_CHUNK` elements stays in the L2 cache and is large enough
    that PyTorch's own intra-op threads share every op (Python threads running
    small blocks were slower: the GIL serialised their op dispatch). Other
    devices use blocks of ``2**22`` elements.
    """
    xs, os_ = x.detach().reshape(-1), out.detach().reshape(-1)
    chunk = TORCH_CHUNK if x.device.type == "cpu" else 1 << 22
    _torch_blocks(xs, os_, seed, t, base, chunk, precise)


def _run(x: Tensor, out: Tensor, seed: int, t: int, precise: bool) -> None:
    """Dispatch ``x * mask * scale -> out`` to the backend for ``x.device``."""
    if x.device.type == "cpu":
        numba_kernel = _backend("numba")
        if numba_kernel is not None:
            if x.dtype in _CPU_DTYPES:
                numba_kernel.dropout_(x, out, seed, t, 0, precise)
            else:  # half precision: float32 compute, one rounding, like torch
                buf = x.float()
                numba_kernel.dropout_(buf, buf, seed, t, 0, precise)
                out.copy_(buf)
            return
    elif x.device.type == "cuda":
        triton_kernel = _backend("triton")
        if triton_kernel is not None:
            triton_kernel.dropout_(x, out, seed, t, 0, precise)
            return
    torch_dropout_(x, out, seed, t, 0, precise)


def apply_(x: Tensor, out: Tensor, seed: int, p: float, precise: bool = False) -> None:
    """Fill ``out`` (contiguous, may be ``x`` itself) with the dropped ``x``.

    ``precise`` selects the one-word-per-element mask with ``2**-32``
    resolution (structured masks) instead of the paired 16-bit one.
    """
    if x.numel() == 0:
        return
    if p >= 1.0:
        torch.mul(x, 0.0, out=out)  # keeps NaN propagation of x * 0
        return
    _run(x.contiguous(), out, seed, _hash.threshold(p, precise), precise)


def _apply_strided(x: Tensor, out: Tensor, seed: int, p: float) -> None:
    """:func:`apply_` for a non-contiguous ``x`` or ``out`` (fresh, not overlapping).

    From :data:`STRIDED_MIN` elements the numba kernel reads and writes the
    strides directly (float32/float64; half precision through one float32
    buffer in ``out``'s layout); smaller tensors and the other backends
    compute through a contiguous buffer.
    """
    if x.numel() == 0:
        return
    if p >= 1.0:
        torch.mul(x, 0.0, out=out)
        return
    numba_kernel = _backend("numba") if x.device.type == "cpu" else None
    t = _hash.threshold(p)
    if numba_kernel is not None and x.numel() >= STRIDED_MIN:
        if x.dtype in _CPU_DTYPES:
            numba_kernel.dropout_strided_(x, out, seed, t)
        else:  # half precision: float32 compute, one rounding, like torch
            buf = torch.empty_like(out, dtype=torch.float32)
            numba_kernel.dropout_strided_(x.float(), buf, seed, t)
            out.copy_(buf)
        return
    if out.is_contiguous():
        apply_(x, out, seed, p)  # reads x through one .contiguous() copy
        return
    buf = x.contiguous()
    apply_(buf, buf, seed, p)
    out.copy_(buf)


def dropout(x: Tensor, seed: int, p: float, like: tuple[int, ...] | None = None) -> Tensor:
    """Out-of-place seeded dropout without autograd, in ``torch.empty_like``'s layout.

    The output keeps ``x``'s strides when ``x`` is dense (``channels_last``,
    permuted) and is dense in ``x``'s dimension order otherwise (slices),
    like ``x * mask`` in PyTorch. ``like`` gives the strides to use instead
    when ``x`` is not dense: backward passes the forward output's, since
    PyTorch's ``grad * mask`` takes the mask's layout when ``grad`` is a
    broadcast (stride-0) tensor such as the gradient of ``y.sum()``.
    """
    out = torch.empty_like(x)
    if like is not None and out.stride() != x.stride():  # x is not dense
        out = torch.empty_strided(x.shape, like, dtype=x.dtype, device=x.device)
    if x.is_contiguous() and out.is_contiguous():
        apply_(x, out, seed, p)
    else:
        _apply_strided(x, out, seed, p)
    return out


def dropout_(x: Tensor, seed: int, p: float, precise: bool = False) -> Tensor:
    """In-place seeded dropout of ``x`` without autograd."""
    if x.is_contiguous():
        apply_(x, x, seed, p, precise)
    else:
        out = x.contiguous()
        apply_(out, out, seed, p, precise)
        x.copy_(out)
    return x


class EagerDropout(torch.autograd.Function):
    """Eager-mode autograd wrapper: keeps the seed as a Python int, no tensor.

    Cheaper to call than the ``torch.library`` operator (no op dispatch and
    no seed tensor), which matters for small tensors; ``torch.compile`` uses the op.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, seed: int, p: float) -> Tensor:  # noqa: D102
        out = dropout(x, seed, p)
        ctx.seed, ctx.p, ctx.strides = seed, p, out.stride()
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:  # noqa: D102
        return _grad(grad, ctx.seed, ctx.p, ctx.strides), None, None


def _grad(grad: Tensor, seed: int, p: float, strides: tuple[int, ...]) -> Tensor:
    """The gradient of a seeded dropout: the same dropout applied to ``grad``.

    Recorded by autograd only under ``create_graph=True`` (double backward);
    otherwise the kernel runs directly, which saves a ``Function`` call. A
    broadcast ``grad`` is read in place and the result takes ``strides``
    (the forward output's layout), as ``grad * mask`` does in PyTorch.
    """
    if torch.is_grad_enabled():
        return EagerDropout.apply(grad, seed, p)
    return dropout(grad, seed, p, like=strides)


class EagerDropoutInplace(torch.autograd.Function):
    """In-place twin of :class:`EagerDropout` (marks ``x`` dirty)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, seed: int, p: float) -> Tensor:  # noqa: D102
        ctx.seed, ctx.p, ctx.strides = seed, p, x.stride()
        ctx.mark_dirty(x)
        return dropout_(x, seed, p)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:  # noqa: D102
        return _grad(grad, ctx.seed, ctx.p, ctx.strides), None, None


@torch.library.custom_op("dropkit::seeded_dropout", mutates_args=())
def seeded_dropout_op(x: Tensor, seed: Tensor, p: float) -> Tensor:
    """Return ``x * mask(seed, p) / (1 - effective_p)`` as a new tensor (``x``'s layout)."""
    return dropout(x, int(seed.item()), p)


@seeded_dropout_op.register_fake
def _(x: Tensor, seed: Tensor, p: float) -> Tensor:
    return torch.empty_like(x)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: Tensor) -> None:
    _, seed, p = inputs
    ctx.save_for_backward(seed)  # 8 bytes: the whole backward state
    ctx.p = p  # type: ignore[attr-defined]


def _backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple:
    (seed,) = ctx.saved_tensors  # type: ignore[attr-defined]
    return seeded_dropout_op(grad, seed, ctx.p), None, None  # type: ignore[attr-defined]


seeded_dropout_op.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("dropkit::seeded_dropout_", mutates_args=("x",))
def seeded_dropout_inplace_op(x: Tensor, seed: Tensor, p: float, precise: bool = False) -> None:
    """Overwrite ``x`` with ``x * mask(seed, p) / (1 - effective_p)``.

    ``precise`` selects the structured-mask form (``2**-32`` resolution).
    """
    dropout_(x, int(seed.item()), p, precise)


@seeded_dropout_inplace_op.register_fake
def _(x: Tensor, seed: Tensor, p: float, precise: bool = False) -> None:
    return None

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
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from dropkit.kernels import _hash
from dropkit.kernels._pool import run_split

_CPU_DTYPES = (torch.float32, torch.float64)
TORCH_CHUNK = 1 << 15  # CPU block: below torch's parallel grain size (32768 < n)
PER_THREAD_MIN = 1 << 19  # elements per Python thread worth its start-up
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
    xs: Tensor, os_: Tensor, seed: int, t: int, base: int, first: int, last: int, chunk: int
) -> None:
    """Hash-and-scale the logical indices ``[first, last)`` block by block."""
    k0, k1 = _hash.keys(seed)
    size = min(last - first, chunk)
    h = torch.empty(size, dtype=torch.int32, device=xs.device)
    tmp = torch.empty_like(h)
    keep = torch.empty(size, dtype=torch.bool, device=xs.device)
    st, sc = _hash.signed_threshold(t), _hash.scale(t)
    idx = first
    while idx < last:
        # a block never crosses a multiple of ``chunk`` (a power of two below
        # 2**31), hence neither 2**31 (int32 sign) nor 2**32 (high word)
        stop = min((idx // chunk + 1) * chunk, last)
        m, i = stop - idx, idx - base
        lo = _hash._s32(idx)
        hb, tb, kb = h[:m], tmp[:m], keep[:m]
        torch.arange(lo, lo + m, dtype=torch.int32, out=hb)
        _hash.hash_block_(hb, k0, _hash.high_key(k1, idx >> 32), tb)
        hb.bitwise_xor_(-(1 << 31))  # unsigned order -> signed order
        torch.ge(hb, st, out=kb)
        # x * keep is x or 0 exactly; the scalar multiply rounds once, in the
        # same compute precision as the compiled kernels.
        torch.mul(xs[i : i + m], kb, out=os_[i : i + m])
        os_[i : i + m].mul_(sc)
        idx = stop


def torch_dropout_(x: Tensor, out: Tensor, seed: int, t: int, base: int = 0) -> None:
    """Pure-torch kernel: the same hash in int32 tensor ops, block by block.

    Works on any device and dtype; ``x`` and ``out`` are contiguous and may
    alias; ``base`` is the logical index of ``x``'s first element. On CPU,
    blocks of ``2**15`` elements stay under PyTorch's parallel grain size, so
    each op runs on one thread without a barrier (barriers made the multi-
    threaded version 10x slower on a loaded machine), and Python threads
    (``torch.get_num_threads()`` of them; ops release the GIL) share the
    blocks. Other devices use large blocks on one stream.
    """
    # worker threads start with grad mode on: work on detached views
    xs, os_ = x.detach().reshape(-1), out.detach().reshape(-1)
    n = xs.numel()
    if x.device.type != "cpu":
        _torch_blocks(xs, os_, seed, t, base, base, base + n, 1 << 22)
        return
    workers = min(torch.get_num_threads(), n // PER_THREAD_MIN)
    if workers <= 1:
        _torch_blocks(xs, os_, seed, t, base, base, base + n, TORCH_CHUNK)
        return
    # split on block boundaries so every worker's blocks stay aligned
    blocks = -(-(base + n) // TORCH_CHUNK) - base // TORCH_CHUNK
    edges = [base] + [
        (base // TORCH_CHUNK + blocks * w // workers) * TORCH_CHUNK for w in range(1, workers)
    ]
    edges.append(base + n)
    run_split(
        _torch_blocks,
        [(xs, os_, seed, t, base, lo, hi, TORCH_CHUNK) for lo, hi in zip(edges[:-1], edges[1:])],
    )


def _run(x: Tensor, out: Tensor, seed: int, t: int) -> None:
    """Dispatch ``x * mask * scale -> out`` to the backend for ``x.device``."""
    if x.device.type == "cpu":
        numba_kernel = _backend("numba")
        if numba_kernel is not None:
            if x.dtype in _CPU_DTYPES:
                numba_kernel.dropout_(x, out, seed, t)
            else:  # half precision: float32 compute, one rounding, like torch
                buf = x.float()
                numba_kernel.dropout_(buf, buf, seed, t)
                out.copy_(buf)
            return
    elif x.device.type == "cuda":
        triton_kernel = _backend("triton")
        if triton_kernel is not None:
            triton_kernel.dropout_(x, out, seed, t)
            return
    torch_dropout_(x, out, seed, t)


def apply_(x: Tensor, out: Tensor, seed: int, p: float) -> None:
    """Fill ``out`` (contiguous, may be ``x`` itself) with the dropped ``x``."""
    if x.numel() == 0:
        return
    if p >= 1.0:
        torch.mul(x, 0.0, out=out)  # keeps NaN propagation of x * 0
        return
    _run(x.contiguous(), out, seed, _hash.threshold(p))


def dropout(x: Tensor, seed: int, p: float) -> Tensor:
    """Out-of-place seeded dropout without autograd; the output is contiguous."""
    if not x.is_contiguous():
        # .contiguous() already made a private copy: drop out in place on it
        out = x.contiguous()
        apply_(out, out, seed, p)
        return out
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    apply_(x, out, seed, p)
    return out


def dropout_(x: Tensor, seed: int, p: float) -> Tensor:
    """In-place seeded dropout of ``x`` without autograd."""
    if x.is_contiguous():
        apply_(x, x, seed, p)
    else:
        x.copy_(dropout(x, seed, p))
    return x


class EagerDropout(torch.autograd.Function):
    """Eager-mode autograd wrapper: keeps the seed as a Python int, no tensor.

    Cheaper to call than the ``torch.library`` operator (about 5 us less per
    call), which matters for small tensors; ``torch.compile`` uses the op.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, seed: int, p: float) -> Tensor:  # noqa: D102
        ctx.seed, ctx.p = seed, p
        return dropout(x, seed, p)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:  # noqa: D102
        return EagerDropout.apply(grad, ctx.seed, ctx.p), None, None


class EagerDropoutInplace(torch.autograd.Function):
    """In-place twin of :class:`EagerDropout` (marks ``x`` dirty)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, seed: int, p: float) -> Tensor:  # noqa: D102
        ctx.seed, ctx.p = seed, p
        ctx.mark_dirty(x)
        return dropout_(x, seed, p)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple:  # noqa: D102
        return EagerDropout.apply(grad, ctx.seed, ctx.p), None, None


@torch.library.custom_op("dropkit::seeded_dropout", mutates_args=())
def seeded_dropout_op(x: Tensor, seed: Tensor, p: float) -> Tensor:
    """Return ``x * mask(seed, p) / (1 - effective_p)`` as a new contiguous tensor."""
    return dropout(x, int(seed.item()), p)


@seeded_dropout_op.register_fake
def _(x: Tensor, seed: Tensor, p: float) -> Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: Tensor) -> None:
    _, seed, p = inputs
    ctx.save_for_backward(seed)  # 8 bytes: the whole backward state
    ctx.p = p  # type: ignore[attr-defined]


def _backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple:
    (seed,) = ctx.saved_tensors  # type: ignore[attr-defined]
    return seeded_dropout_op(grad, seed, ctx.p), None, None  # type: ignore[attr-defined]


seeded_dropout_op.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("dropkit::seeded_dropout_", mutates_args=("x",))
def seeded_dropout_inplace_op(x: Tensor, seed: Tensor, p: float) -> None:
    """Overwrite ``x`` with ``x * mask(seed, p) / (1 - effective_p)``."""
    dropout_(x, int(seed.item()), p)


@seeded_dropout_inplace_op.register_fake
def _(x: Tensor, seed: Tensor, p: float) -> None:
    return None

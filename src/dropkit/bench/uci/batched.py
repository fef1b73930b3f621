"""Train a grid of small MC-dropout MLPs as one batched computation.

The network is the UCI regression model of Gal & Ghahramani (2016, "Dropout as
a Bayesian Approximation"): ``dropout(p) -> Linear(h) -> ReLU -> dropout(p) ->
Linear(1)``, trained with mean squared error plus ``reg * sum(W ** 2)`` by Adam
(Kingma & Ba 2015). ``M`` models (hyperparameters x splits x seeds) are stacked:
weights ``(M, d, h)``, and every step is a handful of ``baddbmm``/``bmm`` calls
with a hand-written backward pass. The elementwise work dominates at this size,
so it is kept to a few in-place passes: masks are 16-bit words compared with a
per-model threshold (no float mask is ever built), the input mask and the data
order are applied once per block of rows, the hidden mask is a bool multiply,
the ReLU backward is one ``threshold_backward`` and the scale ``1 / (1 - p)``
is folded into the tiny output weights. Adam runs on one flat ``(M, P)`` buffer.

Each model has its own :class:`~dropkit.bench.uci.streams.ModelStream` for initial
weights, data order and masks, its own ``p``, ``reg`` and data set (sizes may
differ: rows are padded and padded rows carry no gradient; a model with no
rows left in a step is not updated). :func:`dropkit.bench.uci.reference.train_one`
trains one model with ``torch.nn`` and ``torch.optim.Adam`` from the same
stream and reaches the same weights up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from dropkit._optional import require
from dropkit._validation import check_choice, check_int, check_p
from dropkit.bench.uci.streams import ModelStream, Seed, keep_scale, keep_threshold

_WHERE = "BatchedMLP"
_BLOCK_ROWS = 1024  # rows per block of mask words (multiple of 4 and of common batch sizes)


def _threshold_backward(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.threshold_backward(grad, out, 0)


def _fused() -> Any:
    from dropkit.bench.uci import _fused as fused

    return fused


def _pick_backend(backend: str) -> str:
    choice = check_choice(_WHERE, backend, "backend", ("auto", "numba", "torch"))
    if choice == "torch":
        return "torch"
    try:
        require("numba", "fast", _WHERE)
    except ImportError:
        if choice == "numba":
            raise
        return "torch"
    return "numba"


class BatchedMLP:
    """``M`` independent one-hidden-layer dropout MLPs trained at once.

    Args:
        xs: Per-model standardised inputs, each ``(n_m, d)``; entries may be
            the same tensor (models sharing a split).
        ys: Per-model standardised targets, each ``(n_m,)``.
        p: Per-model drop probability (input and hidden dropout).
        reg: Per-model weight-decay factor on ``sum(W ** 2)`` (not biases).
        seeds: Per-model seeds of :class:`ModelStream`.
        n_hidden: Hidden units ``h``.
        batch_size: Mini-batch rows; each epoch reshuffles every model.
        lr: Adam learning rate.
        betas: Adam moment decays.
        eps: Adam epsilon (added after the bias-corrected square root, as in
            ``torch.optim.Adam``).
        dtype: Floating dtype of weights and activations.
        backend: ``"numba"`` (fused kernels, needs the ``fast`` extra),
            ``"torch"`` (batched matmuls and in-place torch ops) or ``"auto"``
            (numba when installed).

    Shape:
        - ``xs[m]``: ``(n_m, d)``; ``ys[m]``: ``(n_m,)``.
        - Weights: ``W1 (M, d, h)``, ``b1 (M, 1, h)``, ``W2 (M, h, 1)``,
          ``b2 (M, 1, 1)``.

    Raises:
        ValueError: On empty grids, mismatched lengths or widths, or bad rates.

    Example:
        >>> x = torch.randn(20, 3); y = torch.randn(20)
        >>> net = BatchedMLP([x, x], [y, y], p=[0.1, 0.2], reg=[1e-4, 1e-4],
        ...                  seeds=[0, 1], n_hidden=8, batch_size=8)
        >>> net.train(2); net.steps.tolist()
        [6, 6]
    """

    def __init__(
        self,
        xs: Sequence[torch.Tensor],
        ys: Sequence[torch.Tensor],
        *,
        p: Sequence[float],
        reg: Sequence[float],
        seeds: Sequence[Seed],
        n_hidden: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        dtype: torch.dtype = torch.float32,
        backend: str = "auto",
    ) -> None:
        m = len(xs)
        if m == 0 or not (len(ys) == len(p) == len(reg) == len(seeds) == m):
            lengths = (len(xs), len(ys), len(p), len(reg), len(seeds))
            raise ValueError(
                f"{_WHERE}: expected xs, ys, p, reg and seeds of one non-zero length, "
                f"but got {lengths!r}. Give one entry per model."
            )
        self.n_hidden = check_int(_WHERE, n_hidden, "n_hidden")
        self.batch_size = check_int(_WHERE, batch_size, "batch_size")
        d = xs[0].shape[1] if xs[0].dim() == 2 else -1
        sizes = []
        for x, y in zip(xs, ys):
            if x.dim() != 2 or x.shape[1] != d or y.shape != (x.shape[0],) or x.shape[0] == 0:
                raise ValueError(
                    f"{_WHERE}: expected every x of shape (n, {d}) with n > 0 and y of "
                    f"shape (n,), but got {tuple(x.shape)!r} and {tuple(y.shape)!r}. "
                    "Pass 2-D inputs of one width and 1-D targets."
                )
            sizes.append(x.shape[0])
        for value in reg:
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"{_WHERE}: expected reg >= 0, but got {value!r}. Use l^2 (1-p) / (2 N tau)."
                )
        self.p = [check_p(_WHERE, value) for value in p]
        self.backend = _pick_backend(backend)
        self.reg = [float(value) for value in reg]
        self.dtype, self.lr, self.betas, self.eps = dtype, float(lr), betas, float(eps)
        self.d, self.m = d, m
        self.sizes = torch.tensor(sizes, dtype=torch.int64)
        self.n_max = max(sizes)
        self._equal = len(set(sizes)) == 1
        self._x = torch.zeros(m, self.n_max, d, dtype=dtype)
        self._y = torch.zeros(m, self.n_max, dtype=dtype)
        for i, (x, y) in enumerate(zip(xs, ys)):
            self._x[i, : sizes[i]] = x
            self._y[i, : sizes[i]] = y
        self.streams = [ModelStream(seed) for seed in seeds]
        self._thr = torch.tensor([keep_threshold(v) for v in self.p], dtype=torch.int16)
        self._thr = self._thr.view(m, 1, 1)
        self._scale = torch.tensor([keep_scale(v) for v in self.p], dtype=dtype).view(m, 1, 1)
        self._reg2 = torch.tensor([2.0 * v for v in self.reg], dtype=dtype).view(m, 1)
        h = self.n_hidden
        self._shapes = [(d, h), (1, h), (h, 1), (1, 1)]
        self._offsets = np.cumsum([0] + [a * b for a, b in self._shapes]).tolist()
        self.flat = torch.zeros(m, self._offsets[-1], dtype=dtype)
        for i, stream in enumerate(self.streams):
            w1 = torch.from_numpy(stream.glorot(d, h))
            w2 = torch.from_numpy(stream.glorot(h, 1))
            self.flat[i, : d * h] = w1.reshape(-1).to(dtype)
            self.flat[i, self._offsets[2] : self._offsets[3]] = w2.reshape(-1).to(dtype)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.steps = torch.zeros(m, dtype=torch.int64)
        self.epoch = 0
        self.last_loss = torch.zeros(m, dtype=torch.float64)

    # -- parameter views -------------------------------------------------------
    def _view(self, t: torch.Tensor, i: int) -> torch.Tensor:
        a, b = self._shapes[i]
        return t[:, self._offsets[i] : self._offsets[i + 1]].view(self.m, a, b)

    @property
    def weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views ``(W1, b1, W2, b2)`` into the flat parameter buffer."""
        w1, b1, w2, b2 = (self._view(self.flat, i) for i in range(4))
        return w1, b1, w2, b2

    # -- training ----------------------------------------------------------------
    def train(
        self, epochs: int, *, callback: Callable[[BatchedMLP], bool | None] | None = None
    ) -> None:
        """Run ``epochs`` more epochs; ``callback(self)`` after each may return True to stop."""
        check_int(_WHERE, epochs, "epochs", minimum=0)
        for _ in range(epochs):
            self._epoch()
            if callback is not None and callback(self):
                break

    def _epoch(self) -> None:
        if self.backend == "numba":
            self._epoch_numba()
        else:
            self._epoch_torch()

    def _block_rows(self) -> int:
        block = max(_BLOCK_ROWS // self.batch_size, 1) * self.batch_size
        return block * 4 if block % 4 else block

    def _epoch_numba(self) -> None:
        fused = _fused()
        m, n_max, d, h = self.m, self.n_max, self.d, self.n_hidden
        k, sizes = d + h, self.sizes.numpy()
        perm = np.zeros((m, n_max), dtype=np.int64)
        for i, stream in enumerate(self.streams):
            perm[i, : sizes[i]] = stream.permutation(int(sizes[i]))
        block = self._block_rows()
        words = np.empty((m, min(block, n_max), k), dtype=np.int16)
        xb_t = torch.empty(m, min(block, n_max), d, dtype=self.dtype)
        grad_t = torch.empty_like(self.flat)
        x_np, y_np, flat = self._x.numpy(), self._y.numpy(), self.flat.numpy()
        grad, thr, scale = grad_t.numpy(), self._thr.view(-1).numpy(), self._scale.view(-1).numpy()
        o_b1, o_w2, o_b2 = self._offsets[1], self._offsets[2], self._offsets[3]
        reg2 = self._reg2.numpy()
        w1 = self.weights[0]
        sq = np.zeros(m, dtype=np.float64)
        for r0 in range(0, n_max, block):
            r1 = min(r0 + block, n_max)
            for i, stream in enumerate(self.streams):
                rows = min(max(int(sizes[i]) - r0, 0), r1 - r0)
                if rows:
                    words[i, :rows] = stream.mask_words(rows, k)
            xb = xb_t[:, : r1 - r0]
            fused.mask_inputs(x_np, perm, words, r0, thr, scale, xb.numpy())
            yb = np.take_along_axis(y_np, perm[:, r0:r1], axis=1)
            for s0 in range(0, r1 - r0, self.batch_size):
                s1 = min(s0 + self.batch_size, r1 - r0)
                counts = np.clip(sizes - (r0 + s0), 0, s1 - s0)
                x0 = xb[:, s0:s1]
                a = torch.bmm(x0, w1)  # (M, B, h), becomes the pre-activation gradient
                grad[:, o_b1:] = 0.0
                grad[:, o_w2:o_b2] = reg2 * flat[:, o_w2:o_b2]
                fused.hidden_step(
                    a.numpy(),
                    words,
                    s0,
                    d,
                    thr,
                    scale,
                    flat[:, o_b1:o_w2],
                    flat[:, o_w2:o_b2],
                    flat[:, o_b2],
                    yb[:, s0:s1],
                    counts,
                    grad,
                    o_b1,
                    o_w2,
                    o_b2,
                    sq,
                )
                g1 = torch.baddbmm(w1 * self._reg2.view(-1, 1, 1), x0.transpose(1, 2), a)
                grad_t[:, :o_b1] = g1.view(m, -1)
                fused.adam_update(
                    flat,
                    grad,
                    self.exp_avg.numpy(),
                    self.exp_avg_sq.numpy(),
                    self.steps.numpy(),
                    counts > 0,
                    self.lr,
                    *self.betas,
                    self.eps,
                )
        self.last_loss = torch.from_numpy(sq / sizes)
        self.epoch += 1

    def _epoch_torch(self) -> None:
        m, n_max, d, k = self.m, self.n_max, self.d, self.d + self.n_hidden
        perm = torch.zeros(m, n_max, dtype=torch.int64)
        for i, stream in enumerate(self.streams):
            n_i = int(self.sizes[i])
            perm[i, :n_i] = torch.from_numpy(stream.permutation(n_i))
        sq_sum = torch.zeros(m, dtype=torch.float64)
        block = self._block_rows()
        words = torch.empty(m, min(block, n_max), k, dtype=torch.int16)
        sizes = self.sizes.tolist()
        for r0 in range(0, n_max, block):
            r1 = min(r0 + block, n_max)
            bits = words[:, : r1 - r0]
            for i, stream in enumerate(self.streams):
                rows = min(max(sizes[i] - r0, 0), r1 - r0)
                if rows:
                    bits[i, :rows].copy_(torch.from_numpy(stream.mask_words(rows, k)))
            drop = bits < self._thr  # (M, R, d + h) bool
            idx = perm[:, r0:r1]
            xb = torch.gather(self._x, 1, idx.unsqueeze(-1).expand(-1, -1, d))  # (M, R, d)
            xb.masked_fill_(drop[..., :d], 0.0).mul_(self._scale)
            yb = torch.gather(self._y, 1, idx).unsqueeze(-1)  # (M, R, 1)
            drop_h = drop[..., d:]
            for s0 in range(0, r1 - r0, self.batch_size):
                s1 = min(s0 + self.batch_size, r1 - r0)
                counts = (self.sizes - (r0 + s0)).clamp(0, s1 - s0)
                sq_sum += self._step(xb[:, s0:s1], yb[:, s0:s1], drop_h[:, s0:s1], counts)
        self.last_loss = sq_sum / self.sizes.to(torch.float64)
        self.epoch += 1

    def _step(
        self, x0: torch.Tensor, y: torch.Tensor, drop_h: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """One Adam step of every model with rows in this batch; returns sum r^2."""
        w1, b1, w2, b2 = self.weights
        a = torch.baddbmm(b1, x0, w1)  # (M, B, h)
        a.relu_().masked_fill_(drop_h, 0.0)
        w2s = w2 * self._scale  # (M, h, 1): the hidden 1 / (1 - p) folded in
        r = torch.baddbmm(b2, a, w2s).sub_(y)  # (M, B, 1) residuals
        if bool((counts == counts[0]).all()):
            dout = r * (2.0 / int(counts[0]))
        else:
            rows = torch.arange(r.shape[1]).view(1, -1, 1)
            r.mul_(rows < counts.view(-1, 1, 1))
            dout = r * (2.0 / counts.clamp_min(1).to(self.dtype)).view(-1, 1, 1)
        sq = (r * r).sum((1, 2)).to(torch.float64)
        da = _threshold_backward(torch.bmm(dout, w2s.transpose(1, 2)), a)  # (M, B, h)
        reg2 = self._reg2.view(-1, 1, 1)
        grads = (
            torch.baddbmm(w1 * reg2, x0.transpose(1, 2), da),  # (M, d, h)
            da.sum(1, keepdim=True),
            torch.baddbmm(w2 * reg2, a.transpose(1, 2), dout * self._scale),  # (M, h, 1)
            dout.sum(1, keepdim=True),
        )
        grad = torch.cat([g.reshape(self.m, -1) for g in grads], dim=1)  # (M, P)
        self._adam(grad, None if self._equal else counts > 0)
        return sq

    def _adam(self, grad: torch.Tensor, active: torch.Tensor | None) -> None:
        beta1, beta2 = self.betas
        if active is None:
            self.steps += 1
            step = int(self.steps[0])
            bc1, bc2 = 1 - beta1**step, 1 - beta2**step
            self.exp_avg.lerp_(grad, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.exp_avg_sq.sqrt() / math.sqrt(bc2)).add_(self.eps)
            self.flat.addcdiv_(self.exp_avg, denom, value=-self.lr / bc1)
            return
        on = active.to(self.dtype).view(-1, 1)
        self.steps += active.to(torch.int64)
        steps = self.steps.clamp_min(1).to(torch.float64).view(-1, 1)
        corr1 = (1 - torch.pow(beta1, steps)).to(self.dtype)
        corr2 = (1 - torch.pow(beta2, steps)).to(self.dtype)
        self.exp_avg.lerp_(grad, on * (1 - beta1))
        self.exp_avg_sq.mul_(1 - on * (1 - beta2)).addcmul_(grad, grad * on, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / corr2.sqrt()).add_(self.eps)
        self.flat.sub_(self.exp_avg / denom * (on * self.lr / corr1))

    # -- checkpointing -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return everything needed to continue training bit for bit."""
        return {
            "flat": self.flat.clone(),
            "exp_avg": self.exp_avg.clone(),
            "exp_avg_sq": self.exp_avg_sq.clone(),
            "steps": self.steps.clone(),
            "epoch": self.epoch,
            "streams": [s.get_state() for s in self.streams],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a grid built with the same arguments.

        Raises:
            ValueError: If the saved grid has a different number of models or parameters.
        """
        if tuple(state["flat"].shape) != tuple(self.flat.shape):
            raise ValueError(
                f"{_WHERE}: expected a checkpoint of shape {tuple(self.flat.shape)!r}, but got "
                f"{tuple(state['flat'].shape)!r}. Resume with the same grid, or start afresh."
            )
        self.flat.copy_(state["flat"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps.copy_(state["steps"])
        self.epoch = int(state["epoch"])
        for stream, s in zip(self.streams, state["streams"]):
            stream.set_state(s)

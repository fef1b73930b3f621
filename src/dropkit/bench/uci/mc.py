"""MC-dropout prediction for a whole :class:`~dropkit.bench.uci.batched.BatchedMLP` grid.

``T`` stochastic passes per model (Gal & Ghahramani 2016) are streamed in
chunks: each chunk's outputs are folded into a running sum (for the predictive
mean) and a running log-sum-exp of ``-tau/2 (y - y_t)^2`` (for the test
log-likelihood), so memory does not grow with ``T``. Masks come from each
model's own stream, ``T * n`` rows of mask words in pass-major order, so
:func:`reference_samples` reproduces the exact passes of one model.

Why not :func:`dropkit.mc_predict`: a :class:`~dropkit.bench.uci.batched.BatchedMLP`
is not an ``nn.Module`` with dropout sites but ``M`` models stacked in one set of
tensors, and the protocol's numbers need each model's masks from its own
:class:`~dropkit.bench.uci.streams.ModelStream` (the stream training used),
whereas ``mc_predict`` runs one module with masks from the kernels' keyed hash.
The log-likelihood is the same sum as :func:`dropkit.metrics.mc_log_likelihood`
(``tests/bench/uci/test_uci.py`` pins the two against each other).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dropkit._validation import check_int
from dropkit.bench.uci.batched import BatchedMLP, _fused
from dropkit.bench.uci.reference import ReferenceMLP
from dropkit.bench.uci.streams import ModelStream, keep_scale, keep_threshold

_WHERE = "mc_regression"
_CHUNK_WORDS = 1 << 23  # mask words per chunk over all models


@dataclass
class MCRegression:
    """Per-model MC-dropout regression scores, in the target's units.

    Attributes:
        mean: Predictive mean of each model, ``(n_m,)`` arrays.
        rmse: RMSE of the predictive mean, ``(M,)``.
        ll: Mean test log-likelihood, ``(M,)``.
        ll_points: Per-point log-likelihoods, ``(n_m,)`` arrays.
    """

    mean: list[np.ndarray]
    rmse: np.ndarray
    ll: np.ndarray
    ll_points: list[np.ndarray]


def mc_regression(
    net: BatchedMLP,
    xs: Sequence[torch.Tensor],
    ys: Sequence[np.ndarray],
    *,
    y_mean: Sequence[float],
    y_std: Sequence[float],
    tau: Sequence[float],
    samples: int,
) -> MCRegression:
    """Score every model of ``net`` with ``samples`` MC-dropout passes.

    It cannot reuse :func:`dropkit.mc_predict`: ``net`` is not an ``nn.Module``
    (``mc_predict`` refuses it) but ``M`` models stacked in one set of tensors,
    whose passes must draw their masks from each model's own training stream
    to reproduce the protocol's numbers (see the module docstring).

    Args:
        net: Trained grid; its streams supply the prediction masks.
        xs: Per-model standardised inputs ``(n_m, d)``.
        ys: Per-model targets ``(n_m,)`` in original units.
        y_mean: Per-model target mean used for standardising.
        y_std: Per-model target std used for standardising.
        tau: Per-model model precision in the target's units.
        samples: Number of passes ``T``.

    Returns:
        The :class:`MCRegression` scores.
    """
    check_int(_WHERE, samples, "samples")
    m, d, h = net.m, net.d, net.n_hidden
    if not (len(xs) == len(ys) == len(y_mean) == len(y_std) == len(tau) == m):
        raise ValueError(
            f"{_WHERE}: expected one x, y, y_mean, y_std and tau per model ({m}), but got "
            f"{(len(xs), len(ys), len(y_mean), len(y_std), len(tau))!r}. Give one per model."
        )
    sizes = np.array([x.shape[0] for x in xs], dtype=np.int64)
    n_max, k = int(sizes.max()), d + h
    x = torch.zeros(m, n_max, d, dtype=net.dtype)
    y = np.zeros((m, n_max))
    for i in range(m):
        x[i, : sizes[i]] = xs[i]
        y[i, : sizes[i]] = ys[i]
    # models are scored in groups so a chunk of at least 4 passes fits the word budget;
    # each model's stream is its own, so grouping does not change any number
    group = max(1, min(m, _CHUNK_WORDS // (4 * n_max * k)))
    per_chunk = max(4, (_CHUNK_WORDS // (group * n_max * k)) // 4 * 4)  # multiple of 4 passes
    total = np.zeros((m, n_max))
    lse_max, lse_sum = np.full((m, n_max), -np.inf), np.zeros((m, n_max))
    thr = net._thr.view(-1).numpy()
    scale = net._scale.view(-1).numpy()
    w1 = net.weights[0]
    flat, o = net.flat.numpy(), net._offsets
    mean_arr, std_arr = np.asarray(y_mean, np.float64), np.asarray(y_std, np.float64)
    tau_arr = np.asarray(tau, np.float64)
    words = np.zeros((group, per_chunk * n_max, k), dtype=np.int16)
    for g0 in range(0, m, group):
        g = slice(g0, min(g0 + group, m))
        count = g.stop - g.start
        for start in range(0, samples, per_chunk):
            passes = min(per_chunk, samples - start)
            for i in range(g.start, g.stop):
                rows = passes * int(sizes[i])
                words[i - g0, :rows] = net.streams[i].mask_words(rows, k)
            if net.backend != "numba":
                _accumulate_torch(
                    net,
                    g,
                    x,
                    y,
                    words,
                    passes,
                    sizes,
                    mean_arr,
                    std_arr,
                    tau_arr,
                    total,
                    lse_max,
                    lse_sum,
                )
                continue
            fused = _fused()
            xm = torch.empty(count, passes * n_max, d, dtype=net.dtype)
            fused.mc_inputs(x[g].numpy(), words, passes, sizes[g], thr[g], scale[g], xm.numpy())
            a = torch.bmm(xm, w1[g])  # (group, passes * n, h)
            fused.mc_accumulate(
                a.numpy(),
                words,
                passes,
                sizes[g],
                d,
                thr[g],
                scale[g],
                flat[g, o[1] : o[2]],
                flat[g, o[2] : o[3]],
                flat[g, o[3]],
                mean_arr[g],
                std_arr[g],
                y[g],
                tau_arr[g],
                total[g],
                lse_max[g],
                lse_sum[g],
            )
    means, lls = [], []
    rmse, ll = np.zeros(m), np.zeros(m)
    const = -math.log(samples) - 0.5 * math.log(2 * math.pi)
    for i in range(m):
        n = int(sizes[i])
        mean = total[i, :n] / samples
        points = lse_max[i, :n] + np.log(lse_sum[i, :n]) + const + 0.5 * math.log(tau_arr[i])
        means.append(mean)
        lls.append(points)
        rmse[i] = math.sqrt(float(np.mean((y[i, :n] - mean) ** 2)))
        ll[i] = float(points.mean())
    return MCRegression(mean=means, rmse=rmse, ll=ll, ll_points=lls)


def _accumulate_torch(
    net: BatchedMLP,
    group: slice,
    x: torch.Tensor,
    y: np.ndarray,
    words: np.ndarray,
    passes: int,
    sizes: np.ndarray,
    y_mean: np.ndarray,
    y_std: np.ndarray,
    tau: np.ndarray,
    total: np.ndarray,
    lse_max: np.ndarray,
    lse_sum: np.ndarray,
) -> None:
    """Plain-torch version of the numba chunk kernels (one model at a time)."""
    d = net.d
    w1, b1, w2, b2 = net.weights
    for i in range(group.start, group.stop):
        n = int(sizes[i])
        bits = torch.from_numpy(words[i - group.start, : passes * n]).view(passes, n, -1)
        keep = (bits >= int(net._thr.view(-1)[i])).to(net.dtype) * net._scale.view(-1)[i]
        hidden = torch.relu((x[i, :n] * keep[..., :d]) @ w1[i] + b1[i]) * keep[..., d:]
        out = (hidden @ w2[i] + b2[i]).squeeze(-1).double() * y_std[i] + y_mean[i]  # (T, n)
        total[i, :n] += out.sum(0).numpy()
        e = -0.5 * tau[i] * (torch.from_numpy(y[i, :n]) - out) ** 2
        top = torch.maximum(e.max(0).values, torch.from_numpy(lse_max[i, :n]))
        s = torch.from_numpy(lse_sum[i, :n]) * torch.exp(torch.from_numpy(lse_max[i, :n]) - top)
        lse_sum[i, :n] = (s + torch.exp(e - top).sum(0)).numpy()
        lse_max[i, :n] = top.numpy()


def reference_samples(
    model: ReferenceMLP, stream: ModelStream, x: torch.Tensor, *, p: float, samples: int
) -> torch.Tensor:
    """Draw ``samples`` MC passes of one reference model from its stream.

    Shape:
        - x: ``(N, d)``.
        - Output: ``(samples, N)`` standardised predictions.
    """
    n, d = x.shape
    k = d + model.hidden.out_features
    words = torch.from_numpy(stream.mask_words(samples * n, k)).view(samples * n, k)
    with torch.no_grad():
        out = model(x.repeat(samples, 1), words, keep_threshold(p), keep_scale(p))
    return out.view(samples, n)

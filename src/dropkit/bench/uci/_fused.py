"""Fused elementwise kernels (numba) for the batched dropout-MLP grid.

At UCI sizes the matrix products are cheap and the elementwise passes (masks,
ReLU, their gradients, reductions) dominate, so everything between the two
``bmm`` calls of a training step runs as one loop over each row: bias, ReLU,
hidden mask, output unit, residual, output-layer gradients and the ReLU/mask
backward, writing the hidden gradient in place of the activations. The input
mask and the data order are applied in one gather loop per block of rows, Adam
(Kingma & Ba 2015) is one pass over the flat parameters, and MC prediction keeps
a running mean and a running log-sum-exp per point (Gal & Ghahramani 2016) so
no ``(T, N)`` sample matrix is ever stored. Masks compare 16-bit words with a
per-model threshold (see :mod:`dropkit.bench.uci.streams`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Reassociating sums lets LLVM vectorise the dot products; NaN/inf semantics are kept.
_REASSOC = {"reassoc", "contract"}


@numba.njit(cache=True, nogil=True)
def mask_inputs(x, perm, words, r0, thr, scale, out):  # pragma: no cover - compiled
    """``out[m, i] = x[m, perm[m, r0 + i]] * keep * scale`` for a block of rows."""
    m_count, rows, d = out.shape
    zero = out.dtype.type(0.0)
    for m in range(m_count):
        t, s = thr[m], scale[m]
        for i in range(rows):
            src = x[m, perm[m, r0 + i]]
            mask = words[m, i]
            dst = out[m, i]
            for c in range(d):
                dst[c] = src[c] * s if mask[c] >= t else zero


@numba.njit(cache=True, nogil=True, fastmath=_REASSOC)
def hidden_step(
    a, words, s0, d, thr, scale, b1, w2, b2, y, counts, grad, o_b1, o_w2, o_b2, sq
):  # pragma: no cover
    """Forward after ``x @ W1`` and backward down to the hidden pre-activations.

    ``a`` ``(M, B, h)`` holds ``x0 @ W1`` on entry and the gradient of the loss
    with respect to the pre-activations on exit. Bias, output-weight and
    output-bias gradients are added into ``grad`` at the given offsets.
    """
    m_count, rows, h = a.shape
    zero = a.dtype.type(0.0)
    w2s = np.empty(h, dtype=a.dtype)
    bias = np.empty(h, dtype=a.dtype)
    g_b1 = np.empty(h, dtype=a.dtype)
    g_w2 = np.empty(h, dtype=a.dtype)
    for m in range(m_count):
        c = counts[m]
        t, s = thr[m], scale[m]
        am = a[m]
        if c == 0:
            am[:, :] = zero
            continue
        for j in range(h):
            w2s[j] = w2[m, j] * s
            bias[j] = b1[m, j]
            g_b1[j] = zero
            g_w2[j] = zero
        inv = a.dtype.type(2.0 / c)
        g_b2 = zero
        for i in range(rows):
            row = am[i]
            if i >= c:
                row[:] = zero
                continue
            mask = words[m, s0 + i, d:]
            out = b2[m]
            for j in range(h):
                v = row[j] + bias[j]
                z = v if (v > zero and mask[j] >= t) else zero
                row[j] = z
                out += z * w2s[j]
            r = out - y[m, i]
            sq[m] += r * r
            g = r * inv
            g_b2 += g
            gs = g * s
            for j in range(h):
                z = row[j]
                g_w2[j] += z * gs
                da = g * w2s[j] if z > zero else zero
                row[j] = da
                g_b1[j] += da
        for j in range(h):
            grad[m, o_b1 + j] += g_b1[j]
            grad[m, o_w2 + j] += g_w2[j]
        grad[m, o_b2] += g_b2


@numba.njit(cache=True, nogil=True)
def adam_update(
    param, grad, exp_avg, exp_avg_sq, steps, active, lr, beta1, beta2, eps
):  # pragma: no cover
    """One Adam step per active model, with ``torch.optim.Adam``'s formulas."""
    m_count, size = param.shape
    one = param.dtype.type(1.0)
    b1, b2, e = param.dtype.type(beta1), param.dtype.type(beta2), param.dtype.type(eps)
    for m in range(m_count):
        if not active[m]:
            continue
        steps[m] += 1
        bc1 = 1.0 - beta1 ** steps[m]
        step_size = param.dtype.type(lr / bc1)
        inv_bc2 = param.dtype.type(1.0 / math.sqrt(1.0 - beta2 ** steps[m]))
        pm, gm, em, sm = param[m], grad[m], exp_avg[m], exp_avg_sq[m]
        for q in range(size):
            g = gm[q]
            ea = em[q] + (one - b1) * (g - em[q])
            es = sm[q] * b2 + (one - b2) * g * g
            em[q] = ea
            sm[q] = es
            pm[q] -= step_size * ea / (np.sqrt(es) * inv_bc2 + e)


@numba.njit(cache=True, nogil=True)
def mc_inputs(x, words, passes, n_valid, thr, scale, out):  # pragma: no cover
    """Masked inputs of ``passes`` passes: ``out[m, t * n_m + i] = x[m, i] * keep * scale``."""
    m_count, _, d = out.shape
    zero = out.dtype.type(0.0)
    for m in range(m_count):
        t, s, n = thr[m], scale[m], n_valid[m]
        for q in range(passes * n):
            src = x[m, q % n]
            mask = words[m, q]
            dst = out[m, q]
            for c in range(d):
                dst[c] = src[c] * s if mask[c] >= t else zero


@numba.njit(cache=True, nogil=True, fastmath=_REASSOC)
def mc_accumulate(
    a,
    words,
    passes,
    n_valid,
    d,
    thr,
    scale,
    b1,
    w2,
    b2,
    y_mean,
    y_std,
    y,
    tau,
    total,
    lse_max,
    lse_sum,
):  # pragma: no cover
    """Finish ``passes`` MC passes and fold them into running per-point statistics.

    ``a`` ``(M, passes * n, h)`` holds ``x_masked @ W1``. Each pass's output is
    taken back to the target's units; ``total`` accumulates the outputs and
    ``(lse_max, lse_sum)`` a running log-sum-exp of ``-tau/2 (y - y_t)^2``.
    """
    h = a.shape[2]
    zero = a.dtype.type(0.0)
    w2s = np.empty(h, dtype=a.dtype)
    bias = np.empty(h, dtype=a.dtype)
    for m in range(a.shape[0]):
        t, s, n = thr[m], scale[m], n_valid[m]
        for j in range(h):
            w2s[j] = w2[m, j] * s
            bias[j] = b1[m, j]
        half_tau, mean, std, bias2 = 0.5 * tau[m], y_mean[m], y_std[m], b2[m]
        tot, top, acc, target = total[m], lse_max[m], lse_sum[m], y[m]
        for q in range(passes * n):
            i = q % n
            row = a[m, q]
            mask = words[m, q, d:]
            out = zero
            for j in range(h):
                v = row[j] + bias[j]
                out += v * w2s[j] if (v > zero and mask[j] >= t) else zero
            pred = (out + bias2) * std + mean
            tot[i] += pred
            e = target[i] - pred
            v = -half_tau * e * e
            if v > top[i]:
                acc[i] = acc[i] * math.exp(top[i] - v) + 1.0
                top[i] = v
            else:
                acc[i] += math.exp(v - top[i])


def empty_lse(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the initial running log-sum-exp state ``(-inf, 0)`` in float64."""
    return np.full(shape, -np.inf), np.zeros(shape)

"""BatchBALD (Kirsch, van Amersfoort and Gal, 2019): greedy joint mutual information.

BatchBALD scores a batch ``{x_1..x_n}`` by the mutual information between the
joint labels and the parameters,

    ``a(x_1..n) = H[y_1..n] - sum_i E_s H[y_i | w_s]``,

and builds the batch greedily (the function is submodular, so greedy is within
``1 - 1/e`` of the best batch). The joint needs *joint* samples: sample ``s``
must use the same dropout masks ``w_s`` for every input, e.g.
``mc_predict(..., consistent_masks=True, keep_samples=True)``. With ``S``
samples the joint predictive is ``p(y_1..n) = (1/S) sum_s prod_i p(y_i | w_s)``.

* **Exact** while the number of label configurations ``C^n`` stays at most
  ``max_exact_configs``: the matrix ``P[s, k] = prod_i p(y_i = k_i | w_s)`` over
  all configurations ``k`` is kept and extended by each chosen point.
* **Sampled** beyond that: ``M = joint_samples`` configurations ``y^m`` of the
  chosen points are drawn from the joint (draw ``s`` uniformly, then each
  ``y_i ~ p(. | w_s)``), and for a candidate ``x``

      ``H[y_1..n-1, y] ~= -(1/M) sum_m sum_c p(c | y^m) log p(y^m, c)``,

  with ``p(y^m, c) = (1/S) sum_s P[s, m] p(c | w_s)`` and
  ``p(c | y^m) = p(y^m, c) / p(y^m)``. This is unbiased because the ``y^m`` are
  exact draws; its standard error is reported. Columns of ``P`` are rescaled
  (log scale tracked) so long batches do not underflow.

Everything is float64. Batch size 1 reduces exactly to BALD.

References:
    Kirsch, van Amersfoort, Gal (2019). BatchBALD: efficient and diverse batch
    acquisition for deep Bayesian active learning. NeurIPS.
    Houlsby et al. (2011). Bayesian active learning for classification and
    preference learning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dropkit._validation import TensorLike, check_generator, check_int
from dropkit.metrics.information import as_samples, entropy
from dropkit.uncertainty.result import MCResult

# Candidate chunks keep (chunk, configs, C) float64 blocks under this many elements.
_BLOCK = 1 << 22


@dataclass
class BatchBALDResult:
    """The greedily chosen batch.

    Attributes:
        indices: Chosen input indices in order of choice ``(k,)`` int64.
        scores: Joint mutual information of the first ``i + 1`` chosen inputs
            ``(k,)`` (non-decreasing up to estimation noise).
        std_errors: Standard error of each score (0 where computed exactly).
        exact: Whether each step was computed exactly.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    std_errors: torch.Tensor
    exact: list[bool] = field(default_factory=list)


def _chunk(n_configs: int, c: int) -> int:
    return max(1, _BLOCK // max(1, n_configs * c))


def _exact_entropies(p: torch.Tensor, joint: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """H[y_chosen, y_x] for each candidate, from P (S, K) over all K configurations."""
    s, k = joint.shape
    out = torch.empty(cand.shape[0], dtype=torch.float64)
    step = _chunk(k, p.shape[-1])
    for start in range(0, cand.shape[0], step):
        idx = cand[start : start + step]
        probs = torch.einsum("sk,snc->nkc", joint, p[:, idx, :]) / s  # (n, K, C)
        out[start : start + step] = entropy(probs.reshape(idx.shape[0], -1))
    return out


def _sampled_entropies(
    p: torch.Tensor, joint: torch.Tensor, log_scale: torch.Tensor, cand: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate H[y_chosen, y_x] and its standard error from M sampled configurations."""
    s, m = joint.shape
    den = joint.mean(0)  # (M,) p(y^m) / scale_m
    est = torch.empty(cand.shape[0], dtype=torch.float64)
    se = torch.empty(cand.shape[0], dtype=torch.float64)
    step = _chunk(m, p.shape[-1])
    for start in range(0, cand.shape[0], step):
        idx = cand[start : start + step]
        num = torch.einsum("sm,snc->nmc", joint, p[:, idx, :]) / s  # p(y^m, c) / scale_m
        cond = num / den[None, :, None]
        log_num = torch.log(num) + log_scale[None, :, None]
        terms = -torch.where(cond > 0, cond * log_num, torch.zeros_like(cond)).sum(-1)  # (n, M)
        est[start : start + step] = terms.mean(1)
        se[start : start + step] = terms.std(1) / math.sqrt(m) if m > 1 else 0.0
    return est, se


def _draw_configs(
    p: torch.Tensor, chosen: list[int], m: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw M joint configurations of the chosen points; return (P, log_scale, w)."""
    s = p.shape[0]
    w = torch.randint(0, s, (m,), generator=generator)
    joint = torch.ones(s, m, dtype=torch.float64)
    log_scale = torch.zeros(m, dtype=torch.float64)
    for i in chosen:
        joint, log_scale = _extend_sampled(p, i, joint, log_scale, w, generator)
    return joint, log_scale, w


def _extend_sampled(
    p: torch.Tensor,
    i: int,
    joint: torch.Tensor,
    log_scale: torch.Tensor,
    w: torch.Tensor,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.multinomial(p[w, i, :], 1, generator=generator).squeeze(1)  # (M,)
    joint = joint * p[:, i, :][:, y]  # (S, M): times p(y_i^m | w_s)
    scale = joint.max(0).values.clamp_min(torch.finfo(torch.float64).tiny)
    return joint / scale, log_scale + scale.log()


def batch_bald(
    x: MCResult | TensorLike,
    k: int,
    *,
    max_exact_configs: int = 10_000,
    joint_samples: int = 4096,
    candidates: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> BatchBALDResult:
    """Choose ``k`` inputs greedily by BatchBALD.

    Args:
        x: ``MCResult`` with samples from consistent masks, or samples
            ``(S, N, C)`` (sample ``s`` shares its masks across inputs).
        k: Batch size to acquire (at most ``N``).
        max_exact_configs: Largest ``C^n`` computed exactly.
        joint_samples: Sampled configurations ``M`` beyond that.
        candidates: Optional indices ``(K,)`` to choose from (e.g. the top BALD
            scores of a large pool); default all inputs.
        generator: Seeded source for the sampled configurations.

    Shape:
        - samples: ``(S, N, C)``.

    Returns:
        A :class:`BatchBALDResult`.

    Raises:
        ValueError: If ``k`` exceeds the candidates or samples are invalid.

    References:
        Kirsch, van Amersfoort, Gal (2019). BatchBALD. NeurIPS.
    """
    caller = "batch_bald"
    p = as_samples(caller, x)
    s_count, n, c = p.shape
    k = check_int(caller, k, "k")
    max_exact = check_int(caller, max_exact_configs, "max_exact_configs")
    m = check_int(caller, joint_samples, "joint_samples")
    check_generator(caller, generator)
    pool = torch.arange(n) if candidates is None else torch.as_tensor(candidates).long()
    if pool.dim() != 1 or (pool.numel() and (int(pool.min()) < 0 or int(pool.max()) >= n)):
        raise ValueError(
            f"{caller}: expected candidates as indices in [0, {n - 1}], but got "
            f"{tuple(pool.shape)} tensor. Pass a 1-D index tensor."
        )
    if k > pool.numel():
        raise ValueError(
            f"{caller}: expected k <= {pool.numel()} candidates, but got {k}. "
            "Acquire fewer points or pass more candidates."
        )
    cond_ent = entropy(p).mean(0)  # (N,) E_s H[y_i | w_s]
    available = torch.ones(pool.numel(), dtype=torch.bool)
    chosen: list[int] = []
    scores, errors, exact_flags = [], [], []
    joint = torch.ones(s_count, 1, dtype=torch.float64)  # exact: P over configurations
    log_scale = torch.zeros(0, dtype=torch.float64)
    w = torch.zeros(0, dtype=torch.long)
    exact = True
    for _ in range(k):
        if exact and joint.shape[1] * c > max_exact:
            exact = False
            joint, log_scale, w = _draw_configs(p, chosen, m, generator)
        cand = pool[available]
        if exact:
            h = _exact_entropies(p, joint, cand)
            se = torch.zeros_like(h)
        else:
            h, se = _sampled_entropies(p, joint, log_scale, cand)
        base = cond_ent[torch.tensor(chosen, dtype=torch.long)].sum() if chosen else 0.0
        mi = h - (base + cond_ent[cand])
        best = int(torch.argmax(mi))
        i = int(cand[best])
        chosen.append(i)
        scores.append(float(mi[best]))
        errors.append(float(se[best]))
        exact_flags.append(exact)
        available[(pool == i).nonzero()[0, 0]] = False
        if exact:
            joint = (joint[:, :, None] * p[:, i, None, :]).reshape(s_count, -1)
        else:
            joint, log_scale = _extend_sampled(p, i, joint, log_scale, w, generator)
    return BatchBALDResult(
        indices=torch.tensor(chosen, dtype=torch.long),
        scores=torch.tensor(scores, dtype=torch.float64),
        std_errors=torch.tensor(errors, dtype=torch.float64),
        exact=exact_flags,
    )

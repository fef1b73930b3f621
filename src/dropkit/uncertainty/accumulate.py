"""Streaming reductions of Monte Carlo samples: :class:`MCAccumulator`.

Memory stays ``O(N)`` in the number of samples ``S``: running means and sums of
squared deviations are merged chunk by chunk in float64 (Chan, Golub and LeVeque,
1979, the parallel form of Welford's update), entropies and class votes are
running sums, and the MC predictive log-likelihood keeps a running logsumexp
(max and rescaled sum). The decomposition of predictive entropy into expected
entropy and mutual information follows Gal (2016, PhD thesis) and Houlsby et al.
(2011, BALD); the log-likelihood is the UCI protocol of Gal and Ghahramani (2016).
"""

from __future__ import annotations

import math

import torch

from dropkit._validation import renamed_kwargs
from dropkit.metrics.information import entropy, entropy_terms
from dropkit.uncertainty.result import MCResult


def _view_rows(count: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-row ``(N,)`` tensor to broadcast against ``(N, ...)``."""
    return count.reshape(count.shape[0], *([1] * (like.dim() - 1)))


class MCAccumulator:
    """Running float64 summary of MC samples for ``n`` inputs.

    Feed chunks of samples with :meth:`update` (optionally for a subset of the
    rows, as adaptive sampling does), read per-row standard errors with
    :meth:`standard_error`, and finish with :meth:`result`. The result equals
    :meth:`MCResult.from_samples` on the stacked samples up to float64 rounding.

    Args:
        n: Number of inputs (rows).
        task: ``"classification"`` (chunks are probabilities) or ``"regression"``.
        tau: Regression noise precision (homoscedastic), or ``None``.
        target: Regression targets ``(n, ...)`` for the log-likelihood
            (``targets=`` is its deprecated name).
        heteroscedastic: Chunks come with per-sample noise variances.
        keep_samples: Keep the raw samples (memory then grows with ``S``).

    Shape:
        - update chunk: ``(K, M, ...)`` for ``M`` rows (all ``n`` by default).
        - result fields: ``(n, ...)``; ``samples`` ``(S_max, n, ...)`` padded
          with NaN for rows that stopped early.
    """

    @renamed_kwargs(targets="target")
    def __init__(
        self,
        n: int,
        *,
        task: str = "classification",
        tau: float | None = None,
        target: torch.Tensor | None = None,
        heteroscedastic: bool = False,
        keep_samples: bool = False,
    ) -> None:
        self.n = n
        self.task = task
        self.tau = tau
        self.target = target
        from dropkit._validation import check_bool

        self.heteroscedastic = check_bool("MCAccumulator", heteroscedastic, "heteroscedastic")
        self.keep_samples = check_bool("MCAccumulator", keep_samples, "keep_samples")
        self.count = torch.zeros(n, dtype=torch.int64)
        self.dtype: torch.dtype | None = None
        # running buffers, created on the first chunk (trailing shape unknown before)
        self._b: dict[str, torch.Tensor] = {}

    def _init(self, x: torch.Tensor) -> None:
        shape = (self.n, *x.shape[2:])
        f64 = torch.float64
        self.dtype = x.dtype
        b = self._b
        b["mean"] = torch.zeros(shape, dtype=f64)
        b["m2"] = torch.zeros(shape, dtype=f64)
        if self.task == "classification":
            b["ent"] = torch.zeros(shape[:-1], dtype=f64)
            b["votes"] = torch.zeros(shape, dtype=torch.int64)
        else:
            if self.heteroscedastic:
                b["noise"] = torch.zeros(shape, dtype=f64)
            if self.target is not None and (self.heteroscedastic or self.tau is not None):
                b["lse_max"] = torch.full((self.n,), -math.inf, dtype=f64)
                b["lse_sum"] = torch.zeros(self.n, dtype=f64)
        if self.keep_samples:
            b["kept"] = torch.full((0, *shape), math.nan, dtype=x.dtype)

    @torch.no_grad()
    def update(
        self,
        chunk: torch.Tensor,
        rows: torch.Tensor | None = None,
        noise_var: torch.Tensor | None = None,
    ) -> None:
        """Merge ``K`` new samples for the given rows.

        Args:
            chunk: ``(K, M, ...)`` probabilities (classification) or
                predictions (regression) on CPU.
            rows: ``(M,)`` int64 row indices, or ``None`` for all rows.
            noise_var: ``(K, M, ...)`` noise variances (heteroscedastic only).
        """
        if not self._b:
            self._init(chunk)
        b = self._b
        idx: torch.Tensor | slice = slice(None) if rows is None else rows
        k = chunk.shape[0]
        x = chunk.detach().to("cpu", torch.float64)
        na = self.count[idx]
        nb = float(k)
        tot = (na + k).to(torch.float64)
        c_mean = x.mean(0)
        c_m2 = ((x - c_mean) ** 2).sum(0)
        mean = b["mean"][idx]
        delta = c_mean - mean
        na_f = _view_rows(na.to(torch.float64), mean)
        tot_v = _view_rows(tot, mean)
        b["mean"][idx] = mean + delta * (nb / tot_v)
        b["m2"][idx] = b["m2"][idx] + c_m2 + delta**2 * (na_f * nb / tot_v)
        if self.task == "classification":
            b["ent"][idx] = b["ent"][idx] + entropy(x).sum(0)
            hot = torch.nn.functional.one_hot(x.argmax(-1), x.shape[-1]).sum(0)
            b["votes"][idx] = b["votes"][idx] + hot
        else:
            per = None
            if self.heteroscedastic:
                if noise_var is None:
                    raise ValueError(
                        "MCAccumulator.update: expected noise_var for a heteroscedastic "
                        "accumulator, but got None. Pass the per-sample noise variances."
                    )
                nv = noise_var.detach().to("cpu", torch.float64)
                b["noise"][idx] = b["noise"][idx] + nv.sum(0)
                if self.target is not None:
                    y = self.target[idx].to(torch.float64).reshape(x.shape[1:]).unsqueeze(0)
                    per = -0.5 * (torch.log(2 * math.pi * nv) + (y - x) ** 2 / nv)
            elif self.target is not None and self.tau is not None:
                y = self.target[idx].to(torch.float64).reshape(x.shape[1:]).unsqueeze(0)
                per = -0.5 * self.tau * (y - x) ** 2
            if per is not None and "lse_max" in b:
                per = per.reshape(k, x.shape[1], -1).sum(-1)  # (K, M)
                self._merge_lse(per, idx)
        if "kept" in b:
            self._keep(chunk.detach().cpu(), idx, na)
        self.count[idx] = na + k

    def _merge_lse(self, per: torch.Tensor, idx: torch.Tensor | slice) -> None:
        b = self._b
        old_max = b["lse_max"][idx]
        new_max = torch.maximum(old_max, per.max(0).values)
        finite = torch.isfinite(new_max)
        safe = torch.where(finite, new_max, torch.zeros_like(new_max))
        scaled_old = torch.where(
            torch.isfinite(old_max), b["lse_sum"][idx] * torch.exp(old_max - safe), 0.0
        )
        b["lse_sum"][idx] = scaled_old + torch.exp(per - safe).sum(0)
        b["lse_max"][idx] = new_max

    def _keep(self, x: torch.Tensor, idx: torch.Tensor | slice, before: torch.Tensor) -> None:
        kept = self._b["kept"]
        k = x.shape[0]
        need = int((before + k).max()) if before.numel() else 0
        if need > kept.shape[0]:
            pad = kept.new_full((need - kept.shape[0], *kept.shape[1:]), math.nan)
            kept = self._b["kept"] = torch.cat([kept, pad], 0)
        rows = torch.arange(self.n)[idx]
        for j in range(k):
            kept[before + j, rows] = x[j].to(kept.dtype)

    def standard_error(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Standard error of each row's MC estimate (``inf`` below 2 samples).

        Classification: of the mean probability of the currently predicted
        class; regression: of the predictive mean. Trailing positions (tokens,
        outputs) take their maximum.

        Returns:
            ``(M,)`` float64.
        """
        if not self._b:
            size = self.n if rows is None else rows.numel()
            return torch.full((size,), math.inf, dtype=torch.float64)
        idx: torch.Tensor | slice = slice(None) if rows is None else rows
        cnt = self.count[idx].to(torch.float64)
        m2 = self._b["m2"][idx]
        if self.task == "classification":
            pred = self._b["mean"][idx].argmax(-1, keepdim=True)
            m2 = m2.gather(-1, pred).squeeze(-1)
        c = _view_rows(cnt, m2)
        se = (m2 / (c - 1).clamp_min(1) / c).sqrt()
        se = torch.where(c >= 2, se, torch.full_like(se, math.inf))
        return se.reshape(se.shape[0], -1).amax(-1)

    def result(self) -> MCResult:
        """Finish the reductions into an :class:`MCResult`.

        Raises:
            RuntimeError: If some row has received no sample.
        """
        b = self._b
        if not b or bool((self.count < 1).any()):
            raise RuntimeError(
                "MCAccumulator.result: expected at least one sample for every row, but got "
                f"counts {self.count.tolist()[:8]}. Call update() before result()."
            )
        dtype = self.dtype or torch.float32
        mean = b["mean"]
        cnt = _view_rows(self.count.to(torch.float64), mean)
        var = b["m2"] / cnt
        samples = b.get("kept")
        if self.task == "classification":
            ee = b["ent"] / cnt.squeeze(-1)
            pe, mi = entropy_terms(mean, ee)
            vr = 1.0 - b["votes"].max(-1).values.double() / cnt.squeeze(-1)
            return MCResult(
                task="classification",
                mean=mean.to(dtype),
                samples_used=self.count.clone(),
                samples=samples,
                predictive_entropy=pe.to(dtype),
                expected_entropy=ee.to(dtype),
                mutual_information=mi.to(dtype),
                variation_ratio=vr.to(dtype),
                std=var.sqrt().to(dtype),
            )
        alea = None
        if "noise" in b:
            alea = b["noise"] / cnt
        elif self.tau is not None:
            alea = torch.full_like(mean, 1.0 / self.tau)
        ll = None
        if "lse_max" in b:
            ll = b["lse_max"] + torch.log(b["lse_sum"]) - torch.log(self.count.double())
            if not self.heteroscedastic and self.tau is not None:
                dims = mean[0].numel() if mean.dim() > 1 else 1
                ll = ll + (0.5 * math.log(self.tau) - 0.5 * math.log(2 * math.pi)) * dims
        return MCResult(
            task="regression",
            mean=mean.to(dtype),
            samples_used=self.count.clone(),
            samples=samples,
            std=var.sqrt().to(dtype),
            epistemic_var=var.to(dtype),
            aleatoric_var=None if alea is None else alea.to(dtype),
            log_likelihood=None if ll is None else ll.to(dtype),
        )

"""The result of a Monte Carlo (or ensemble) prediction: :class:`MCResult`.

Decompositions follow Gal (2016, PhD thesis) and Houlsby et al. (2011, BALD):
predictive entropy ``H[E_s p_s]`` = expected entropy ``E_s H[p_s]`` (aleatoric) +
mutual information (epistemic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dropkit._validation import renamed_kwargs
from dropkit.metrics.information import entropy, entropy_terms


@dataclass
class MCResult:
    """Summary of ``S`` stochastic predictions for ``N`` inputs.

    Shape letters: ``S`` samples, ``N`` inputs, ``C`` classes. Regression outputs
    keep their trailing shape ``(N, ...)``.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        mean: Mean predictive probabilities ``(N, C)`` (probabilities are averaged,
            never logits) or the predictive mean ``(N, ...)`` for regression.
        samples_used: Samples drawn per input, ``(N,)`` int64.
        samples: The raw per-sample outputs ``(S, N, ...)`` (probabilities for
            classification), kept only on request, else ``None``.
        predictive_entropy: ``H[mean]``, ``(N,)`` (classification).
        expected_entropy: ``E_s H[p_s]``, aleatoric part, ``(N,)`` (classification).
        mutual_information: BALD score, epistemic part, ``(N,)`` (classification).
        variation_ratio: ``1 - (mode count / S)``, ``(N,)`` (classification).
        std: Per-class standard deviation over samples ``(N, C)`` (classification),
            or the epistemic standard deviation ``(N, ...)`` (regression).
        epistemic_var: Variance of the sample means ``(N, ...)`` (regression).
        aleatoric_var: Noise variance ``(N, ...)`` (regression; ``1 / tau`` or the
            mean of a heteroscedastic head's variances), ``None`` if unknown.
        log_likelihood: MC predictive log-likelihood of targets per input ``(N,)``
            (regression, when targets were given), else ``None``.
        extras: Free-form metadata (method name, forward passes, timings, ...).
        labels: Class names by index (a Hugging Face model's ``config.id2label``,
            set by ``mc_predict``), else ``None``.
    """

    task: str
    mean: torch.Tensor
    samples_used: torch.Tensor
    samples: torch.Tensor | None = None
    predictive_entropy: torch.Tensor | None = None
    expected_entropy: torch.Tensor | None = None
    mutual_information: torch.Tensor | None = None
    variation_ratio: torch.Tensor | None = None
    std: torch.Tensor | None = None
    epistemic_var: torch.Tensor | None = None
    aleatoric_var: torch.Tensor | None = None
    log_likelihood: torch.Tensor | None = None
    extras: dict[str, object] = field(default_factory=dict)
    labels: list[str] | None = None

    @property
    def predictions(self) -> torch.Tensor:
        """Predicted class per input, ``mean.argmax(-1)``: ``(N,)`` int64 (classification)."""
        return self.probs.argmax(-1)

    @property
    def predicted_labels(self) -> list[str]:
        """Names of :attr:`predictions` from :attr:`labels` (flattened for ``(N, L)``).

        Raises:
            RuntimeError: If the result has no label names.
        """
        if self.labels is None:
            raise RuntimeError(
                "MCResult.predicted_labels: expected label names (a Hugging Face model's "
                "config.id2label), but got labels=None. Use .predictions for class indices."
            )
        names = self.labels
        return [names[i] for i in self.predictions.reshape(-1).tolist()]

    @property
    def probs(self) -> torch.Tensor:
        """Mean predictive probabilities ``(N, C)`` (classification only)."""
        if self.task != "classification":
            raise RuntimeError(
                f"MCResult.probs: expected a classification result, but got task={self.task!r}. "
                "Use .mean for regression."
            )
        return self.mean

    @property
    def total_var(self) -> torch.Tensor:
        """Epistemic plus aleatoric variance (regression only)."""
        if self.epistemic_var is None:
            raise RuntimeError(
                f"MCResult.total_var: expected a regression result, but got task={self.task!r}. "
                "Use predictive_entropy for classification."
            )
        if self.aleatoric_var is None:
            return self.epistemic_var
        return self.epistemic_var + self.aleatoric_var

    @classmethod
    @renamed_kwargs(targets="target")
    def from_samples(
        cls,
        samples: torch.Tensor,
        *,
        task: str = "classification",
        keep_samples: bool = False,
        tau: float | None = None,
        target: torch.Tensor | None = None,
        noise_var: torch.Tensor | None = None,
    ) -> MCResult:
        """Build a result from stacked samples with exact (float64) reductions.

        This is the naive reference: it holds all ``S`` samples in memory. The
        streaming :class:`~dropkit.uncertainty.MCAccumulator` used by
        ``mc_predict`` must agree with it.

        Args:
            samples: ``(S, N, C)`` probabilities for classification, or
                ``(S, N, ...)`` predictions for regression.
            task: ``"classification"`` or ``"regression"``.
            keep_samples: Store ``samples`` on the result.
            tau: Regression noise precision; sets ``aleatoric_var = 1 / tau`` and
                enables ``log_likelihood``.
            target: Regression targets ``(N, ...)`` for ``log_likelihood``
                (``targets=`` is its deprecated name).
            noise_var: Per-sample noise variances ``(S, N, ...)`` of a
                heteroscedastic head (``exp`` of its log-variance). Sets
                ``aleatoric_var`` to their mean and scores ``target`` under
                ``N(y_s, noise_var_s)``; exclusive with ``tau``.

        Shape:
            - samples: ``(S, N, ...)``.
            - noise_var: same as samples.

        Returns:
            The :class:`MCResult`, in ``samples.dtype``.
        """
        if samples.dim() < 2:
            raise ValueError(
                "MCResult.from_samples: expected samples laid out (S, N, ...), "
                f"but got shape {tuple(samples.shape)}. Stack the per-sample outputs on dim 0."
            )
        s, n = samples.shape[0], samples.shape[1]
        dtype = samples.dtype
        x = samples.double()
        used = torch.full((n,), s, dtype=torch.int64)
        if task == "classification":
            mean = x.mean(0)
            ee = entropy(x).mean(0)
            pe, mi = entropy_terms(mean, ee)
            votes = torch.nn.functional.one_hot(x.argmax(-1), x.shape[-1]).sum(0)
            vr = 1.0 - votes.max(-1).values.double() / s
            std = x.std(0, unbiased=False)
            return cls(
                task=task,
                mean=mean.to(dtype),
                samples_used=used,
                samples=samples if keep_samples else None,
                predictive_entropy=pe.to(dtype),
                expected_entropy=ee.to(dtype),
                mutual_information=mi.to(dtype),
                variation_ratio=vr.to(dtype),
                std=std.to(dtype),
            )
        if task != "regression":
            raise ValueError(
                "MCResult.from_samples: expected task in ['classification', 'regression'], "
                f"but got {task!r}. Pick one of classification, regression."
            )
        mean = x.mean(0)
        var = x.var(0, unbiased=False)
        ll = None
        alea = None
        if noise_var is not None:
            if tau is not None:
                raise ValueError(
                    "MCResult.from_samples: expected tau=None with noise_var, but got "
                    f"tau={tau!r}. A heteroscedastic head gives its own noise; drop tau."
                )
            nv = noise_var.double()
            alea = nv.mean(0)
            if target is not None:
                y = target.double().reshape(mean.shape).unsqueeze(0)
                per = -0.5 * (torch.log(2 * math.pi * nv) + (y - x) ** 2 / nv)
                per = per.reshape(s, n, -1).sum(-1)
                ll = torch.logsumexp(per, 0) - math.log(s)
        elif tau is not None:
            alea = torch.full_like(mean, 1.0 / tau)
            if target is not None:
                sq = (target.double().reshape(mean.shape).unsqueeze(0) - x) ** 2
                per = -0.5 * tau * sq
                while per.dim() > 2:
                    per = per.sum(-1)
                ll = (
                    torch.logsumexp(per, 0)
                    - math.log(s)
                    + (0.5 * math.log(tau) - 0.5 * math.log(2 * math.pi))
                    * (mean[0].numel() if mean.dim() > 1 else 1)
                )
        return cls(
            task=task,
            mean=mean.to(dtype),
            samples_used=used,
            samples=samples if keep_samples else None,
            std=var.sqrt().to(dtype),
            epistemic_var=var.to(dtype),
            aleatoric_var=None if alea is None else alea.to(dtype),
            log_likelihood=None if ll is None else ll.to(dtype),
        )

    @classmethod
    def concat(cls, parts: list[MCResult]) -> MCResult:
        """Join results for consecutive groups of inputs along the ``N`` axis.

        Args:
            parts: Results of the same task, in input order.

        Returns:
            One :class:`MCResult`; ``samples`` are joined on dim 1 (padded with
            NaN to the longest ``S``) when every part kept them. ``extras`` come
            from the first part.

        Raises:
            ValueError: If ``parts`` is empty or mixes tasks.
        """
        if not parts:
            raise ValueError(
                "MCResult.concat: expected at least one result, but got []. "
                "Pass the per-batch results."
            )
        tasks = sorted({p.task for p in parts})
        if len(tasks) != 1:
            raise ValueError(
                f"MCResult.concat: expected results of one task, but got {tasks!r}. "
                "Concatenate classification and regression results separately."
            )
        if len(parts) == 1:
            return parts[0]
        values: dict[str, object] = {"task": tasks[0], "extras": dict(parts[0].extras)}
        for name in (
            "mean",
            "samples_used",
            "predictive_entropy",
            "expected_entropy",
            "mutual_information",
            "variation_ratio",
            "std",
            "epistemic_var",
            "aleatoric_var",
            "log_likelihood",
        ):
            got = [getattr(p, name) for p in parts]
            values[name] = None if any(g is None for g in got) else torch.cat(got, 0)
        kept = [p.samples for p in parts if p.samples is not None]
        if len(kept) == len(parts):
            width = max(k.shape[0] for k in kept)
            padded = []
            for k in kept:
                if k.shape[0] < width:
                    pad = k.new_full((width - k.shape[0], *k.shape[1:]), float("nan"))
                    k = torch.cat([k, pad], 0)
                padded.append(k)
            values["samples"] = torch.cat(padded, 1)
        return cls(**values)  # type: ignore[arg-type]

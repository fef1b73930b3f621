"""Input checks and conversions shared by every metric (no papers; one wording).

Every metric computes in float64 on CPU. Classification metrics take one layout:
probabilities ``(N, C)``, or MC / ensemble samples ``(S, N, C)`` that are averaged
over ``S`` first (the MC predictive averages probabilities, never logits), or an
:class:`~dropkit.uncertainty.result.MCResult` (its ``mean`` is used).
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

import numpy as np
import torch

from dropkit._validation import TensorLike, _fail

#: Rows of a probability matrix must sum to 1 within this absolute tolerance.
#: Loose enough for float16/bfloat16 softmax outputs, tight enough to reject logits.
PROB_SUM_ATOL = 1e-3


class MCResultLike(Protocol):
    """What these functions read from an :class:`~dropkit.uncertainty.result.MCResult`.

    Metrics sit below ``uncertainty/`` and never import it, so the result is
    matched by its fields.
    """

    task: str
    samples: torch.Tensor | None
    predictive_entropy: torch.Tensor | None
    mutual_information: torch.Tensor | None

    @property
    def probs(self) -> torch.Tensor:
        """Mean class probabilities ``(N, C)``."""
        ...


ProbsLike: TypeAlias = MCResultLike | TensorLike
"""Probabilities ``(N, C)``, samples ``(S, N, C)`` or a classification ``MCResult``."""


def as_tensor(caller: str, x: object, name: str) -> torch.Tensor:
    """Convert a tensor, NumPy array or nested sequence to a float64 CPU tensor."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    elif isinstance(x, (np.ndarray, list, tuple)):
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise _fail(
                TypeError, caller, f"{name} to be numeric", type(x).__name__, "Pass a tensor."
            ) from exc
    else:
        raise _fail(
            TypeError,
            caller,
            f"{name} to be a torch.Tensor or numpy array",
            type(x).__name__,
            "Pass a tensor.",
        )
    if t.dtype == torch.bool or t.is_complex():
        raise _fail(
            TypeError, caller, f"{name} to be real numbers", str(t.dtype), "Pass a float tensor."
        )
    return t.double()


def check_finite(caller: str, x: torch.Tensor, name: str) -> None:
    """Raise ValueError if ``x`` holds NaN or infinity."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = x[bad].flatten()[0].item()
        raise _fail(
            ValueError,
            caller,
            f"finite {name}",
            f"{int(bad.sum())} non-finite value(s) such as {first}",
            "Remove or fix the NaN/inf entries before computing the metric.",
        )


def as_probs(caller: str, probs: object, name: str = "probs") -> torch.Tensor:
    """Return validated ``(N, C)`` float64 probabilities.

    Accepts ``(N, C)`` probabilities, ``(S, N, C)`` samples (averaged over ``S``),
    or an ``MCResult`` (its ``mean``). Values must be finite, non-negative and
    each row must sum to 1 within :data:`PROB_SUM_ATOL`.
    """
    mean = getattr(probs, "mean", None)
    if isinstance(mean, torch.Tensor) and hasattr(probs, "task"):
        if probs.task != "classification":
            raise _fail(
                ValueError,
                caller,
                "a classification MCResult",
                f"task={probs.task!r}",
                "Use the regression metrics for regression results.",
            )
        probs = mean
    p = as_tensor(caller, probs, name)
    if p.dim() == 3:
        p = p.mean(0)  # (S, N, C) -> (N, C): average probabilities over samples
    if p.dim() != 2 or p.shape[0] == 0 or p.shape[1] < 1:
        raise _fail(
            ValueError,
            caller,
            f"{name} of shape (N, C) or samples (S, N, C) with N >= 1",
            tuple(p.shape),
            "Stack per-sample probabilities on dim 0.",
        )
    check_finite(caller, p, name)
    if bool((p < 0).any()):
        raise _fail(
            ValueError,
            caller,
            f"non-negative {name}",
            f"minimum {p.min().item():.6g}",
            "Pass probabilities (softmax of logits), not logits.",
        )
    sums = p.sum(-1)
    dev = (sums - 1.0).abs()
    if bool((dev > PROB_SUM_ATOL).any()):
        i = int(dev.argmax())
        raise _fail(
            ValueError,
            caller,
            f"rows of {name} summing to 1 (tolerance {PROB_SUM_ATOL:g})",
            f"row {i} summing to {sums[i].item():.6g}",
            "Pass probabilities (softmax of logits), not logits or unnormalised scores.",
        )
    return p


def as_labels(caller: str, labels: object, n: int, num_classes: int) -> torch.Tensor:
    """Return validated int64 labels ``(N,)`` with values in ``[0, num_classes)``."""
    if isinstance(labels, torch.Tensor):
        y = labels.detach().cpu()
    else:
        y = torch.as_tensor(np.asarray(labels))
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise _fail(
            TypeError,
            caller,
            "integer class indices as target",
            str(y.dtype),
            "Pass class indices, e.g. target.long().",
        )
    if y.dim() != 1 or y.shape[0] != n:
        raise _fail(
            ValueError,
            caller,
            f"target of shape ({n},) matching the probabilities",
            tuple(y.shape),
            "Pass one class index per row of probs.",
        )
    y = y.long()
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][0].item()
        raise _fail(
            ValueError,
            caller,
            f"target in [0, {num_classes - 1}]",
            bad,
            "Labels index the columns of probs; check the class count.",
        )
    return y


def as_vector(caller: str, x: object, name: str, n: int | None = None) -> torch.Tensor:
    """Return a finite float64 vector ``(N,)`` (optionally of length ``n``)."""
    v = as_tensor(caller, x, name)
    if v.dim() != 1 or (n is not None and v.shape[0] != n):
        want = f"({n},)" if n is not None else "(N,)"
        raise _fail(
            ValueError, caller, f"{name} of shape {want}", tuple(v.shape), "Pass a 1-D tensor."
        )
    check_finite(caller, v, name)
    return v


def as_binary(caller: str, x: object, name: str, n: int) -> torch.Tensor:
    """Return a boolean vector ``(n,)`` from booleans or 0/1 integers."""
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 1 or t.shape[0] != n:
        raise _fail(
            ValueError,
            caller,
            f"{name} of shape ({n},) matching the scores",
            tuple(t.shape),
            "Pass one flag per score.",
        )
    if t.dtype != torch.bool:
        if t.dtype.is_floating_point or t.is_complex() or bool(((t != 0) & (t != 1)).any()):
            raise _fail(
                ValueError,
                caller,
                f"{name} to be booleans or 0/1 integers",
                str(t.dtype) if t.dtype.is_floating_point else sorted(set(t.tolist()))[:5],
                "Pass a bool tensor such as labels >= 5.",
            )
        t = t.bool()
    return t


def check_same_shape(caller: str, a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    """Raise ValueError unless two tensors have the same shape."""
    if a.shape != b.shape:
        raise _fail(
            ValueError,
            caller,
            f"{nb} with the shape of {na} {tuple(a.shape)}",
            tuple(b.shape),
            "Pass one value per prediction.",
        )


def check_bins(caller: str, n_bins: object) -> int:
    """Validate a bin count (int >= 1)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise _fail(ValueError, caller, "n_bins to be an int >= 1", n_bins, "Pass e.g. n_bins=15.")
    return int(n_bins)

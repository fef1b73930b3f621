"""Inputs and outputs of ``mc_predict``: batching, output kinds, progress bar.

No paper here: the plumbing that lets one call take a tensor, a tokenizer's
``BatchEncoding`` or a ``DataLoader``, and read logits, probabilities or
regression values (optionally a heteroscedastic mean and log-variance) from a
tensor, a Hugging Face ``ModelOutput`` or a tuple.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from dropkit._validation import _fail

WHERE = "mc_predict"


def rows_of(batch: Any) -> int:
    """Number of inputs in a batch (dim 0 of its first tensor)."""
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            raise _fail(
                ValueError,
                WHERE,
                "inputs with a batch dimension",
                tuple(batch.shape),
                "Add one with x.unsqueeze(0).",
            )
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.dim() >= 1:
                return int(value.shape[0])
        raise _fail(
            ValueError,
            WHERE,
            "a mapping holding at least one batched tensor",
            sorted(batch.keys()),
            "Pass tensors (return_tensors='pt' for tokenizers).",
        )
    raise _fail(
        TypeError,
        WHERE,
        "a batch to be a tensor or a mapping of tensors",
        type(batch).__name__,
        "Yield tensors, (x, y) tuples or dicts from the loader.",
    )


def _slice(batch: Any, n: int, lo: int, hi: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[lo:hi]
    return {
        k: v[lo:hi] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n else v
        for k, v in batch.items()
    }


def iter_batches(inputs: Any, batch_size: int | None) -> tuple[Iterator[Any], int | None]:
    """Yield model-ready batches and return the total number of inputs if known.

    A tensor or a mapping is one batch (cut into ``batch_size`` pieces when
    given); any other iterable yields batches, where a tuple or list batch
    contributes its first element (``(x, y)`` from a ``DataLoader``).
    """
    if isinstance(inputs, (torch.Tensor, Mapping)):
        n = rows_of(inputs)
        step = n if batch_size is None else batch_size
        pieces = (_slice(inputs, n, lo, min(lo + step, n)) for lo in range(0, n, max(step, 1)))
        return pieces, n
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
        raise _fail(
            TypeError,
            WHERE,
            "inputs to be a tensor, a mapping or an iterable of batches",
            type(inputs).__name__,
            "Pass a tensor, tokenizer(..., return_tensors='pt') or a DataLoader.",
        )

    def gen() -> Iterator[Any]:
        for item in inputs:
            batch = item[0] if isinstance(item, (tuple, list)) and item else item
            if isinstance(batch, (torch.Tensor, Mapping)) and batch_size is not None:
                n = rows_of(batch)
                for lo in range(0, n, batch_size):
                    yield _slice(batch, n, lo, min(lo + batch_size, n))
            else:
                yield batch

    return gen(), None


def first_output(raw: Any) -> torch.Tensor:
    """The prediction tensor of a model output: tensor, ``.logits`` or first item."""
    if isinstance(raw, torch.Tensor):
        return raw
    logits = getattr(raw, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
        return raw[0]
    raise _fail(
        TypeError,
        WHERE,
        "the model to return a tensor, an output with .logits or a tuple",
        type(raw).__name__,
        "Wrap the model so that it returns the prediction tensor.",
    )


def split_heteroscedastic(raw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, log_var)`` from a pair, or from a tensor split in halves on its last dim."""
    if (
        isinstance(raw, (tuple, list))
        and len(raw) == 2
        and all(isinstance(t, torch.Tensor) for t in raw)
    ):
        return raw[0], raw[1]
    out = first_output(raw)
    if out.dim() < 2 or out.shape[-1] % 2:
        raise _fail(
            ValueError,
            WHERE,
            "a heteroscedastic output (mean, log_var) or a last dim of even size 2*D",
            tuple(out.shape),
            "Return the pair (mean, log_var) from the model.",
        )
    mean, log_var = out.chunk(2, -1)
    return mean, log_var


def check_probs(probs: torch.Tensor) -> None:
    """Raise ValueError unless the last dim holds probability distributions."""
    tol = 1e-2 if probs.dtype in (torch.float16, torch.bfloat16) else 1e-4
    sums = probs.sum(-1)
    bad_sum = bool(((sums - 1).abs() > tol).any())
    if bad_sum or bool((probs < -tol).any()) or not bool(torch.isfinite(probs).all()):
        lo, hi = float(sums.min()), float(sums.max())
        raise _fail(
            ValueError,
            WHERE,
            "output='probs' rows that are non-negative and sum to 1",
            f"row sums in [{lo:.4g}, {hi:.4g}]",
            "Pass output='logits' if the model returns unnormalised scores.",
        )


def check_logits(logits: torch.Tensor) -> None:
    """Raise ValueError unless the output is floating with at least 2 classes."""
    if not logits.is_floating_point() or logits.dim() < 2 or logits.shape[-1] < 2:
        raise _fail(
            ValueError,
            WHERE,
            "output='logits' of shape (N, ..., C) with C >= 2 classes",
            (tuple(logits.shape), str(logits.dtype)),
            "For one output per input pass output='regression'; for a binary logit z "
            "return torch.stack([0 * z, z], -1).",
        )


def progress_bar(enabled: bool | None, total: int | None) -> Any:
    """A tqdm bar counting inputs, or ``None`` (off when not a tty or unavailable)."""
    if enabled is False:
        return None
    if enabled is None:
        if not sys.stderr.isatty():
            return None
        try:
            import tqdm
        except ImportError:
            return None
    else:
        from dropkit._optional import require

        tqdm = require("tqdm", "report", WHERE)
    return tqdm.tqdm(total=total, unit="input", desc="mc_predict", leave=False)


def row_keys(row_ids: Any, total: int | None) -> torch.Tensor | None:
    """Validate ``row_ids=`` and return them as a 1-D int64 CPU tensor (or ``None``).

    Raises:
        TypeError: If the keys are not integers.
        ValueError: If they are not 1-D, not one per input, or not unique.
    """
    if row_ids is None:
        return None
    fix = "Pass one integer key per input row, e.g. row_ids=torch.arange(len(x))."
    try:
        keys = torch.as_tensor(row_ids)
    except (TypeError, ValueError, RuntimeError):
        raise _fail(
            TypeError, WHERE, "row_ids to be integer keys", type(row_ids).__name__, fix
        ) from None
    if keys.dtype == torch.bool or keys.is_floating_point() or keys.is_complex():
        raise _fail(TypeError, WHERE, "row_ids of an integer dtype", str(keys.dtype), fix)
    if keys.dim() != 1:
        raise _fail(ValueError, WHERE, "row_ids of shape (N,)", tuple(keys.shape), fix)
    if total is not None and keys.numel() != total:
        raise _fail(ValueError, WHERE, f"{total} row_ids (one per input)", keys.numel(), fix)
    keys = keys.to("cpu", torch.int64)
    uniq, counts = torch.unique(keys, return_counts=True)
    if bool((counts > 1).any()):
        repeated = uniq[counts > 1][:5].tolist()
        raise _fail(
            ValueError,
            WHERE,
            "unique row_ids (equal keys would give two rows the same masks)",
            f"repeated keys {repeated}",
            "Give every input row its own key.",
        )
    return keys


def batch_keys(keys: torch.Tensor | None, offset: int, n: int) -> torch.Tensor | None:
    """Keys of the batch of ``n`` rows that starts at input ``offset`` (``None``: positions).

    Raises:
        ValueError: If the inputs have more rows than ``keys``.
    """
    if keys is None:
        return None
    if offset + n > keys.numel():
        raise _fail(
            ValueError,
            WHERE,
            f"at least {offset + n} row_ids (one per input)",
            keys.numel(),
            "Pass one key per input row, in input order.",
        )
    return keys[offset : offset + n]

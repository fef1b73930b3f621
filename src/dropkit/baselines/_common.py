"""Helpers shared by the rival methods: safe eval mode, batched logits, argument checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from dropkit._validation import check_int, check_module


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode and restore each one's own flag afterwards.

    ``model.train(flag)`` would overwrite per-module flags (e.g. a frozen BatchNorm
    kept in eval), so the flags are saved and restored one by one, also on error.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def check_inputs(caller: str, inputs: Any) -> torch.Tensor:
    """Raise TypeError unless ``inputs`` is a non-empty tensor with a batch dim."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(
            f"{caller}: expected inputs to be a torch.Tensor (N, ...), but got "
            f"{type(inputs).__name__!r}. Stack the inputs into one tensor."
        )
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(
            f"{caller}: expected inputs of shape (N, ...) with N >= 1, but got "
            f"{tuple(inputs.shape)}. Pass a non-empty batch."
        )
    return inputs


def check_batch_size(caller: str, batch_size: Any) -> int | None:
    """Validate an optional batch size."""
    return None if batch_size is None else check_int(caller, batch_size, "batch_size")


def batched_logits(
    caller: str, model: nn.Module, inputs: torch.Tensor, batch_size: int | None
) -> torch.Tensor:
    """Eval-mode logits ``(N, C)`` of ``model`` over ``inputs`` in chunks, without grad."""
    check_module(caller, model)
    check_inputs(caller, inputs)
    bs = check_batch_size(caller, batch_size) or inputs.shape[0]
    outs = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, inputs.shape[0], bs):
            outs.append(model(inputs[start : start + bs]))
    logits = torch.cat(outs)
    if logits.dim() != 2:
        raise ValueError(
            f"{caller}: expected the model to return logits (N, C), but got shape "
            f"{tuple(logits.shape)}. Wrap the model so it returns class logits."
        )
    return logits


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())

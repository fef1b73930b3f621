"""Everyday inputs of ``mc_predict``: raw texts with a tokenizer, any device, label names.

``mc_predict(model, ["a text", ...], tokenizer=tok)`` tokenizes the texts in
pieces of ``batch_size`` (each padded to its longest text, truncated to the
tokenizer's maximum length), so a long list never becomes one huge padded
batch; every batch is moved to the model's device (a CUDA model can take CPU
tensors); and for a Hugging Face classifier the class names of
``config.id2label`` label the result.

No paper here: plumbing for :func:`dropkit.mc_predict`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from dropkit._validation import _fail

WHERE = "mc_predict"
#: Texts tokenized at once when ``batch_size`` is not given.
TEXT_BATCH = 32


def is_texts(inputs: Any) -> bool:
    """Whether ``inputs`` is a string or a non-empty list / tuple of strings."""
    if isinstance(inputs, str):
        return True
    return (
        isinstance(inputs, (list, tuple))
        and bool(inputs)
        and all(isinstance(t, str) for t in inputs)
    )


def text_batches(
    inputs: Any, tokenizer: Any, batch_size: int | None
) -> tuple[Iterator[Mapping[str, Any]], int]:
    """Tokenized batches of ``inputs`` and the number of texts.

    Args:
        inputs: One text or a list of texts.
        tokenizer: A Hugging Face tokenizer (called as
            ``tokenizer(texts, padding=True, truncation=True, return_tensors="pt")``).
        batch_size: Texts per batch (default :data:`TEXT_BATCH`).

    Returns:
        A generator of tokenizer outputs, and the number of texts.

    Raises:
        TypeError: If ``inputs`` are not texts or ``tokenizer`` is not callable.
    """
    if not callable(tokenizer):
        raise _fail(
            TypeError,
            WHERE,
            "tokenizer to be a Hugging Face tokenizer (callable)",
            type(tokenizer).__name__,
            "Pass AutoTokenizer.from_pretrained(path).",
        )
    if not is_texts(inputs):
        shown = type(inputs).__name__ if not isinstance(inputs, (list, tuple)) else inputs[:3]
        raise _fail(
            TypeError,
            WHERE,
            "a text or a non-empty list of texts with tokenizer=",
            shown,
            "Pass texts such as ['a great movie', ...], or tokenize yourself and drop tokenizer=.",
        )
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    step = batch_size or TEXT_BATCH

    def gen() -> Iterator[Mapping[str, Any]]:
        for lo in range(0, len(texts), step):
            yield tokenizer(
                texts[lo : lo + step], padding=True, truncation=True, return_tensors="pt"
            )

    return gen(), len(texts)


def check_not_texts(inputs: Any) -> None:
    """Raise TypeError for texts passed without a tokenizer."""
    if is_texts(inputs):
        raise _fail(
            TypeError,
            WHERE,
            "inputs to be a tensor, a mapping or an iterable of batches (texts only "
            "with tokenizer=)",
            inputs if isinstance(inputs, str) else list(inputs[:3]),
            "Pass tokenizer=AutoTokenizer.from_pretrained(path) to predict on raw texts.",
        )


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a model without either."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor or a mapping of tensors) with its tensors on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch if batch.device == device else batch.to(device)
    if isinstance(batch, Mapping):
        if all(not isinstance(v, torch.Tensor) or v.device == device for v in batch.values()):
            return batch
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch


def label_names(model: nn.Module, classes: int) -> list[str] | None:
    """Class names from a Hugging Face ``config.id2label`` with ``classes`` entries, if any."""
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not isinstance(id2label, Mapping) or len(id2label) != classes:
        return None
    try:
        return [str(id2label[i]) for i in range(classes)]
    except KeyError:
        return None

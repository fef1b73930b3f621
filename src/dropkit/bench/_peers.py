"""The peers of ``dropkit bench mc --frontier``: baal and torch-uncertainty, when installed.

Each peer wraps a model that takes one tensor (both libraries replicate a
tensor input along dim 0) and returns ``(S, N, C)`` probabilities. For MiniLM
the tensor is ``input_ids`` and ``attention_mask`` stacked on dim 1
(:class:`PackedText` unstacks them). A peer whose library cannot be imported
is skipped with the import error as the reason.

References:
    Atighehchian et al., "Bayesian active learning for production" (baal), 2020.
    Lafage et al., "TorchUncertainty", 2024.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class PackedText(nn.Module):
    """A Hugging Face classifier called on ``(N, 2, L)``: input ids and attention mask."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2, L) -> (N, C)`` logits."""
        return self.model(input_ids=x[:, 0], attention_mask=x[:, 1]).logits


@dataclass(frozen=True)
class Peer:
    """One peer method: how to wrap a model and how to predict ``(S, N, C)``."""

    name: str
    description: str
    module: str  # imported to decide whether the peer runs
    wrap: Callable[[nn.Module, int], Any]
    predict: Callable[[Any, torch.Tensor], torch.Tensor]


def _baal_wrap(model: nn.Module, samples: int) -> Any:
    from baal.bayesian.dropout import MCDropoutModule
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    wrapper = ModelWrapper(MCDropoutModule(model), TrainingArgs(use_cuda=False))
    wrapper.samples = samples  # type: ignore[attr-defined]
    return wrapper


def _baal_predict(wrapper: Any, x: torch.Tensor) -> torch.Tensor:
    logits = wrapper.predict_on_batch(x, iterations=wrapper.samples)  # (N, C, S)
    return torch.softmax(logits.permute(2, 0, 1), -1)


def _tu_wrap(last_layer: bool) -> Callable[[nn.Module, int], Any]:
    def wrap(model: nn.Module, samples: int) -> Any:
        from torch_uncertainty.methods.mc_dropout import mc_dropout

        wrapped = mc_dropout(model, num_estimators=samples, last_layer=last_layer)
        wrapped.eval()  # its train(False) switches the chosen dropout modules on
        wrapped.samples = samples
        return wrapped

    return wrap


def _tu_predict(wrapped: Any, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = wrapped(x)  # (S * N, C), sample-major
    return torch.softmax(logits.reshape(wrapped.samples, x.shape[0], -1), -1)


PEERS = (
    Peer(
        "baal",
        "baal MCDropoutModule + ModelWrapper.predict_on_batch (every nn.Dropout)",
        "baal.bayesian.dropout",
        _baal_wrap,
        _baal_predict,
    ),
    Peer(
        "torch-uncertainty",
        "torch-uncertainty mc_dropout (every nn.Dropout, on_batch)",
        "torch_uncertainty.methods.mc_dropout",
        _tu_wrap(False),
        _tu_predict,
    ),
    Peer(
        "torch-uncertainty last_layer",
        "torch-uncertainty mc_dropout(last_layer=True): the last nn.Dropout only",
        "torch_uncertainty.methods.mc_dropout",
        _tu_wrap(True),
        _tu_predict,
    ),
)


def available() -> tuple[list[Peer], dict[str, str]]:
    """The peers that import here, and the reason for each one that does not."""
    ok, skipped = [], {}
    for peer in PEERS:
        try:
            importlib.import_module(peer.module)
        except Exception as exc:  # noqa: BLE001 - any failed import skips the peer
            skipped[peer.name] = f"{type(exc).__name__}: {exc}"
        else:
            ok.append(peer)
    return ok, skipped

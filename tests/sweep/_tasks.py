"""Deterministic stand-in tasks for study tests (importable by worker subprocesses)."""

from __future__ import annotations

import time
from typing import Any

import torch

from dropkit.sweep.objectives import Predictions


def quality(p: float) -> torch.Tensor:
    """Probabilities of 20 two-class inputs, all of class 0, worse as p grows."""
    q = 0.95 - p
    return torch.tensor([[q, 1.0 - q]] * 20, dtype=torch.float64)


def factory(options: dict[str, str]) -> Any:
    """A training function that sleeps ``delay`` s per epoch and reports ``quality(p)``."""
    delay = float(options.get("delay", "0"))
    epochs = int(options.get("epochs", "3"))

    def train(params: dict[str, Any], report: Any) -> Predictions:
        preds = Predictions(quality(params["p"]), torch.zeros(20, dtype=torch.int64))
        for epoch in range(epochs):
            time.sleep(delay)
            report(epoch, preds)
        return preds

    train.kind = "classification"  # type: ignore[attr-defined]
    return train


def regression_factory(options: dict[str, str]) -> Any:
    def train(params: dict[str, Any], report: Any) -> Predictions:
        return Predictions(torch.zeros(4, 3), torch.zeros(3), "regression", 1.0)

    train.kind = "regression"  # type: ignore[attr-defined]
    return train

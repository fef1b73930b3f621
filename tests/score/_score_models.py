"""Tiny models for the score tests, importable by Ray workers (PYTHONPATH = this folder)."""

from __future__ import annotations

import time

import torch
from torch import nn


def mlp() -> nn.Module:
    """A float64 4 -> 16 -> 3 classifier with dropout (fixed weights)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)).double()


def regressor() -> nn.Module:
    """A float64 4 -> 16 -> 1 regressor with dropout."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1)).double()


class Slow(nn.Module):
    """The MLP, sleeping a little per forward so a run lasts long enough to disturb it."""

    def __init__(self, seconds: float = 0.02) -> None:
        super().__init__()
        self.net = mlp()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.net(x)


class Interrupting(nn.Module):
    """The MLP, raising KeyboardInterrupt on its ``after``-th forward (a Ctrl-C mid-run)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net = mlp()
        self.after = after
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self.net(x)

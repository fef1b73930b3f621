"""Toy models shared by the site and mode tests, and a model-state fingerprint."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dropkit.sites import find_dropout


class Gated(nn.Module):
    """A custom module that keeps its rate as a float attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.attn_dropout = 0.25

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.lin(x), p=self.attn_dropout, training=self.training)


class Custom(nn.Module):
    """Calls F.dropout with a literal: only a probe can see it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.view(x.shape[0], 1, 2, 4)
        y = F.scaled_dot_product_attention(q, q, q, dropout_p=0.3 if self.training else 0.0)
        return F.dropout2d(y, 0.15, self.training).reshape(x.shape)


class KindDropout(nn.Module):
    """A third-party module that follows dropkit's protocol (class attr kind, attr p)."""

    kind = "gaussian"

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (1 + torch.randn_like(x) * (self.p / (1 - self.p)) ** 0.5)


def make_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(8, 8),
        nn.Dropout(0.1),
        nn.Sequential(nn.Linear(8, 8), nn.AlphaDropout(0.2)),
        Gated(),
        KindDropout(0.3),
        nn.Sequential(nn.Linear(8, 8), nn.Dropout1d(0.4)),
        Custom(),
    )


def state(model: nn.Module) -> tuple:
    """Fingerprint: parameters/buffers, training flags and every rate."""
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    rates = [(s.name, s.p) for s in find_dropout(model)]
    return tensors, flags, rates


def same_state(a: tuple, b: tuple) -> bool:
    return (
        a[0].keys() == b[0].keys()
        and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
        and a[1:] == b[1:]
    )

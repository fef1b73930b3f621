from __future__ import annotations

import pytest
import torch
from torch import nn


def make_data(generator: torch.Generator, n: int, shift: float = 0.0):
    x = torch.randn(n, 6, generator=generator) + shift
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def train_mlp(x: torch.Tensor, y: torch.Tensor, seed: int, steps: int = 60) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.fixture
def toy(generator):
    train = make_data(generator, 200)
    return {
        "train": train,
        "val": make_data(generator, 80),
        "test": make_data(generator, 90),
        "shifted": make_data(generator, 50, shift=0.7),
        "ood": 5 * torch.randn(40, 6, generator=generator),
        "model": train_mlp(*train, seed=0),
    }


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]

"""The demo's data split, network and training loop (scikit-learn digits).

Classes 0-4 are in-distribution, split 25/25/50 into train / validation /
test; every image of classes 5-9 is the out-of-distribution set. The network
is an MLP (64 -> H -> H -> 5) with dropout after each hidden layer, or with
:class:`dropkit.nn.ConcreteDropout` wrapping each linear layer.

References:
    Srivastava et al. (2014), "Dropout: A Simple Way to Prevent Neural
    Networks from Overfitting", JMLR.
    Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dropkit._optional import require

IN_CLASSES = (0, 1, 2, 3, 4)
OOD_CLASSES = (5, 6, 7, 8, 9)


@dataclass
class DemoConfig:
    """Every knob of the demo; written to ``config.json``."""

    seed: int = 0
    quick: bool = False
    hidden: int = 256
    epochs: int = 80
    batch_size: int = 64
    lr: float = 2e-3
    sweep_ps: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.5])
    mc_samples: int = 50
    ensemble_members: int = 5
    convergence_samples: list[int] = field(
        default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256]
    )
    ece_bins: int = 15
    splits: tuple[float, float, float] = (0.25, 0.25, 0.50)

    @classmethod
    def make(cls, *, quick: bool = False, seed: int = 0) -> DemoConfig:
        """The full or the quick configuration."""
        if not quick:
            return cls(seed=seed)
        return cls(
            seed=seed,
            quick=True,
            hidden=128,
            epochs=30,
            sweep_ps=[0.0, 0.2, 0.5],
            mc_samples=20,
            ensemble_members=3,
            convergence_samples=[1, 2, 4, 8, 16, 32, 64],
        )


@dataclass
class Data:
    """Tensors of one split of digits: in-distribution train/val/test and OOD."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_ood: torch.Tensor


def load_data(cfg: DemoConfig) -> Data:
    """Split scikit-learn's digits as described in the module docstring."""
    datasets = require("sklearn.datasets", "metrics", "dropkit demo")
    x_np, y_np = datasets.load_digits(return_X_y=True)
    x = torch.as_tensor(x_np, dtype=torch.float32) / 16.0
    y = torch.as_tensor(y_np, dtype=torch.int64)
    inside = torch.isin(y, torch.tensor(IN_CLASSES))
    x_in, y_in = x[inside], y[inside]
    order = torch.randperm(len(y_in), generator=torch.Generator().manual_seed(cfg.seed))
    n_train = int(cfg.splits[0] * len(order))
    n_val = int(cfg.splits[1] * len(order))
    tr, va, te = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    mean = x_in[tr].mean(0)
    std = x_in[tr].std(0).clamp_min(0.1)

    def norm(t: torch.Tensor) -> torch.Tensor:
        return (t - mean) / std

    return Data(
        norm(x_in[tr]), y_in[tr], norm(x_in[va]), y_in[va], norm(x_in[te]), y_in[te],
        norm(x[~inside]),
    )  # fmt: skip


def make_mlp(cfg: DemoConfig, p: float, *, seed: int, concrete_n: int | None = None) -> nn.Module:
    """The demo network: 64 -> H -> H -> 5 with dropout after each hidden layer.

    Args:
        cfg: The configuration (hidden width ``H``).
        p: Drop rate of the fixed dropout layers.
        seed: Seeds torch's global generator before the weights are drawn.
        concrete_n: Build :class:`dropkit.nn.ConcreteDropout` layers instead,
            with the regularisers of Gal et al. (2017) for ``concrete_n``
            training examples (dropout regulariser ``2 / N``, weight
            regulariser ``l^2 / N`` with length scale ``l = 1e-2``); the
            rate starts at ``0.1`` on the input and ``0.2`` on hidden layers.

    Returns:
        The network.
    """
    from dropkit.nn import Dropout

    torch.manual_seed(seed)
    h, c = cfg.hidden, len(IN_CLASSES)
    if concrete_n is not None:
        from dropkit.nn import ConcreteDropout

        def layer(n_in: int, n_out: int, p0: float) -> nn.Module:
            return ConcreteDropout(
                nn.Linear(n_in, n_out),
                p=p0,
                weight_regularizer=1e-4 / concrete_n,
                dropout_regularizer=2.0 / concrete_n,
            )

        return nn.Sequential(
            layer(64, h, 0.1), nn.ReLU(), layer(h, h, 0.2), nn.ReLU(), layer(h, c, 0.2)
        )
    return nn.Sequential(
        nn.Linear(64, h), nn.ReLU(), Dropout(p),
        nn.Linear(h, h), nn.ReLU(), Dropout(p),
        nn.Linear(h, c),
    )  # fmt: skip


def _eval_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    was = model.training
    model.eval()
    with torch.no_grad():
        logits = model(x)
    model.train(was)
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(-1) == y).double().mean().item()


def _concrete(model: nn.Module) -> list[Any]:
    from dropkit.nn import ConcreteDropout

    return [m for m in model.modules() if isinstance(m, ConcreteDropout)]


def _concrete_p(model: nn.Module) -> float:
    rates = [float(m.p) for m in _concrete(model)]
    return sum(rates) / max(len(rates), 1)


def _regulariser(model: nn.Module) -> torch.Tensor | float:
    terms = [m.regularization() for m in _concrete(model)]
    return sum(terms) if terms else 0.0


def train(
    model: nn.Module,
    data: Data,
    cfg: DemoConfig,
    *,
    seed: int,
    scheduler: Any = None,
    fixed_p: float = 0.0,
) -> dict[str, Any]:
    """Train with Adam and return the learning curves (schema ``settings`` entry).

    Args:
        model: The network (trained in place).
        data: The split.
        cfg: The configuration (epochs, batch size, learning rate).
        seed: Seeds the data order and the dropout masks.
        scheduler: Optional :class:`dropkit.training.DropoutScheduler`.
        fixed_p: The rate to record per epoch when no scheduler or concrete
            dropout sets it.

    Returns:
        ``epochs``, ``train_loss``, ``val_loss``, ``val_acc``, ``p``, ``time_s``
        and ``verdict``: the last reading of an
        :class:`dropkit.training.OverfitMonitor` (``regime``, first advised
        ``action`` and its ``message``, the run's final ``p``), or None.
    """
    from dropkit.training import OverfitMonitor

    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    monitor = OverfitMonitor(patience=5)
    n = len(data.y_train)
    curves: dict[str, Any] = {"epochs": [], "train_loss": [], "val_loss": [], "val_acc": []}
    curves["p"] = []
    concrete = bool(_concrete(model))
    start = time.perf_counter()
    step = 0
    verdict = None
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for idx in torch.randperm(n, generator=order_gen).split(cfg.batch_size):
            if scheduler is not None:
                scheduler.step(step)
            loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            loss = loss + _regulariser(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        train_loss, _ = _eval_loss(model, data.x_train, data.y_train)
        val_loss, val_acc = _eval_loss(model, data.x_val, data.y_val)
        p_now = (
            _concrete_p(model)
            if concrete
            else (scheduler.current_p if scheduler is not None else fixed_p)
        )
        verdict = monitor.update(train_loss, val_loss, p=p_now)
        for key, value in zip(
            ("epochs", "train_loss", "val_loss", "val_acc", "p"),
            (epoch, train_loss, val_loss, val_acc, p_now),
        ):
            curves[key].append(round(value, 6) if isinstance(value, float) else value)
    model.eval()
    curves["time_s"] = round(time.perf_counter() - start, 3)
    curves["verdict"] = None
    if verdict is not None and verdict.advice:
        first = verdict.advice[0]
        curves["verdict"] = {
            "regime": verdict.regime,
            "action": first.name,
            "p": float(curves["p"][-1]) if curves["p"] else 0.0,
            "message": first.message,
        }
    return curves

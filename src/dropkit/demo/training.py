"""The demo's configuration, and its use of the digits pipeline.

The data, network and trainer are those of :mod:`dropkit.demo.digits`.
Classes 0-4 are in-distribution, split 25/25/50 into train / validation /
test and standardised; every image of classes 5-9 is the out-of-distribution
set. The network is an MLP (64 -> H -> H -> 5) with dropout after each hidden
layer, or with :class:`dropkit.nn.ConcreteDropout` wrapping each linear layer.
Each run records learning curves and an :class:`dropkit.training.OverfitMonitor`
verdict.

References:
    Srivastava et al. (2014), "Dropout: A Simple Way to Prevent Neural
    Networks from Overfitting", JMLR.
    Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dropkit.demo.digits import (
    IN_CLASSES,
    OOD_CLASSES,
    DigitsSplit,
    build_concrete_mlp,
    build_mlp,
    fit,
    split_digits,
)

if TYPE_CHECKING:
    from dropkit.training import DropoutScheduler
    from dropkit.training.monitor import Verdict

__all__ = ["IN_CLASSES", "OOD_CLASSES", "DemoConfig", "SweepRuns", "load_data", "make_mlp", "train"]

SweepRuns = dict[float, tuple[nn.Module, dict[str, Any]]]
"""The sweep's runs: drop rate -> (trained network, learning curves of :func:`train`)."""


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


def load_data(cfg: DemoConfig) -> DigitsSplit:
    """The demo's split: classes 0-4 in, 25/25/50, standardised; 5-9 are OOD."""
    return split_digits(
        cfg.seed, classes=IN_CLASSES, fractions=cfg.splits, standardize=True, caller="dropkit demo"
    )


def make_mlp(cfg: DemoConfig, p: float, *, seed: int, concrete_n: int | None = None) -> nn.Module:
    """The demo network (:func:`dropkit.demo.digits.build_mlp`, ``H = cfg.hidden``).

    Args:
        cfg: The configuration (hidden width ``H``).
        p: Drop rate of the fixed dropout layers.
        seed: Seeds torch's global generator before the weights are drawn.
        concrete_n: Build :class:`dropkit.nn.ConcreteDropout` layers instead
            (:func:`dropkit.demo.digits.build_concrete_mlp` for ``concrete_n``
            training examples).

    Returns:
        The network.
    """
    n_out = len(IN_CLASSES)
    if concrete_n is not None:
        return build_concrete_mlp(n_out, hidden=cfg.hidden, n_train=concrete_n, seed=seed)
    return build_mlp(n_out, hidden=cfg.hidden, p=p, seed=seed)


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
    data: DigitsSplit,
    cfg: DemoConfig,
    *,
    seed: int,
    scheduler: DropoutScheduler | None = None,
    fixed_p: float = 0.0,
) -> dict[str, Any]:
    """Train with :func:`dropkit.demo.digits.fit`; return the learning curves.

    Args:
        model: The network (trained in place).
        data: The split.
        cfg: The configuration (epochs, batch size, learning rate).
        seed: Seeds the data order (``seed + 1``) and the dropout masks.
        scheduler: Sets the rate before every step.
        fixed_p: The rate to record per epoch when no scheduler or concrete
            dropout sets it.

    Returns:
        The ``settings`` entry of the schema: ``epochs``, ``train_loss``,
        ``val_loss``, ``val_acc``, ``p``, ``time_s`` and ``verdict``: the last
        reading of an :class:`dropkit.training.OverfitMonitor` (``regime``,
        first advised ``action`` and its ``message``, the run's final ``p``),
        or None.
    """
    from dropkit.training import OverfitMonitor

    monitor = OverfitMonitor(patience=5)
    curves: dict[str, Any] = {"epochs": [], "train_loss": [], "val_loss": [], "val_acc": []}
    curves["p"] = []
    concrete = bool(_concrete(model))
    verdicts: list[Verdict] = []

    def after_epoch(epoch: int) -> None:
        train_loss, _ = _eval_loss(model, data.x_train, data.y_train)
        val_loss, val_acc = _eval_loss(model, data.x_val, data.y_val)
        p_now = (
            _concrete_p(model)
            if concrete
            else (scheduler.current_p if scheduler is not None else fixed_p)
        )
        verdicts.append(monitor.update(train_loss, val_loss, p=p_now))
        for key, value in zip(
            ("epochs", "train_loss", "val_loss", "val_acc", "p"),
            (epoch + 1, train_loss, val_loss, val_acc, p_now),
        ):
            curves[key].append(round(value, 6) if isinstance(value, float) else value)

    start = time.perf_counter()
    fit(
        model, data.x_train, data.y_train, epochs=cfg.epochs, lr=cfg.lr,
        batch_size=cfg.batch_size, order_seed=seed + 1, seed=seed,
        penalty=(lambda: _regulariser(model)) if concrete else None,
        before_step=None if scheduler is None else scheduler.step,
        after_epoch=after_epoch,
    )  # fmt: skip
    curves["time_s"] = round(time.perf_counter() - start, 3)
    curves["verdict"] = None
    verdict = verdicts[-1] if verdicts else None
    if verdict is not None and verdict.advice:
        first = verdict.advice[0]
        curves["verdict"] = {
            "regime": verdict.regime,
            "action": first.name,
            "p": float(curves["p"][-1]) if curves["p"] else 0.0,
            "message": first.message,
        }
    return curves

"""An overfitting monitor that reads train/validation losses and advises.

Once per epoch, :meth:`OverfitMonitor.update` classifies the training regime
and returns structured advice following the usual escalation ladder against
overfitting: raise dropout (0.1 -> 0.2 -> 0.3), add weight decay (AdamW
``weight_decay=0.1``), stop earlier or shrink the model, get more data.

Rules (all thresholds are constructor arguments):

* **diverged** -- a loss is NaN or infinite, or the training loss exceeds
  ``diverge_factor`` times its best value so far (when that best is > 0).
* **healthy** -- the validation loss improved (by more than ``min_delta``)
  within the last ``patience`` epochs. There is nothing to regularise away
  yet, so dropout may be costing accuracy: the advice is to try a lower p.
* **overfitting** -- validation has not improved for ``patience`` epochs
  while the training loss still fell by more than ``min_delta`` over those
  epochs, or the relative gap ``(val - train) / |train|`` exceeds
  ``gap_tolerance``.
* **underfitting** -- validation has stalled, training has stalled too, and
  the relative gap is at most ``gap_tolerance``: the model cannot fit even
  the training data, so regularisation should come down.

``stop`` is true when the monitor diverged or when validation has not
improved for ``stop_patience`` epochs (default ``2 * patience``).

References:
    Prechelt, "Early Stopping - But When?", Neural Networks: Tricks of the
    Trade, 1998.
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 2014.
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from dropkit._validation import _fail, check_int, check_p

__all__ = ["REGIMES", "Action", "OverfitMonitor", "Verdict"]

REGIMES = ("underfitting", "healthy", "overfitting", "diverged")
_LADDER = (0.1, 0.2, 0.3)
_WEIGHT_DECAY = 0.1


@dataclass(frozen=True)
class Action:
    """One step of advice.

    Attributes:
        name: Machine-readable action, e.g. ``"raise_dropout"``.
        message: What to do and why, for people.
        value: Suggested setting (a new p, a weight decay, an epoch) or ``None``.
    """

    name: str
    message: str
    value: float | None = None


@dataclass(frozen=True)
class Verdict:
    """The monitor's reading of one epoch.

    Attributes:
        epoch: Index of the epoch (0-based count of updates).
        regime: One of :data:`REGIMES`.
        advice: Actions in the order to try them; the first is the next step.
        stop: Early-stopping signal.
        train_loss: Training loss fed this epoch.
        val_loss: Validation loss fed this epoch.
        best_val_loss: Lowest validation loss so far (``nan`` if none finite).
        best_epoch: Epoch of ``best_val_loss`` (-1 if none).
        epochs_since_best: Epochs since validation last improved.
        train_change: Training-loss change over the last ``patience`` epochs
            (negative = falling; ``nan`` until enough epochs).
        gap: ``val_loss - train_loss``.
    """

    epoch: int
    regime: str
    advice: tuple[Action, ...]
    stop: bool
    train_loss: float
    val_loss: float
    best_val_loss: float
    best_epoch: int
    epochs_since_best: int
    train_change: float
    gap: float

    def __str__(self) -> str:
        first = self.advice[0].message if self.advice else "no advice"
        return (
            f"epoch {self.epoch}: {self.regime} (train {self.train_loss:.4g}, "
            f"val {self.val_loss:.4g}, best val {self.best_val_loss:.4g} at epoch "
            f"{self.best_epoch}){' - stop' if self.stop else ''}. Next: {first}"
        )


def _loss(name: str, value: object) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(
            TypeError,
            "OverfitMonitor.update",
            f"{name} to be a float",
            type(value).__name__,
            "Pass the epoch's mean loss as a float (loss.item()).",
        )
    return float(value)


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= 0:
        raise _fail(ValueError, "OverfitMonitor", f"{name} >= 0", value, "Pass a number >= 0.")
    return float(value)


class OverfitMonitor:
    """Classify each epoch as underfitting, healthy, overfitting or diverged.

    See the module docstring for the exact rules. The monitor only reads
    numbers; it never touches a model.

    Args:
        patience: Epochs without validation improvement before a plateau counts.
        min_delta: Absolute loss decrease that counts as an improvement.
        gap_tolerance: Relative generalisation gap separating a plateau caused
            by overfitting (above) from one caused by underfitting (at or below).
        stop_patience: Epochs without improvement before ``stop``; ``2 * patience``
            if ``None``.
        diverge_factor: Training loss above this multiple of its best is divergence.

    Example:
        >>> monitor = OverfitMonitor(patience=2)
        >>> for train, val in [(1.0, 1.0), (0.8, 0.9), (0.6, 0.9), (0.4, 0.95)]:
        ...     verdict = monitor.update(train, val, p=0.1)
        >>> verdict.regime, verdict.advice[0].name, verdict.advice[0].value
        ('overfitting', 'raise_dropout', 0.2)
    """

    def __init__(
        self,
        patience: int = 3,
        min_delta: float = 1e-3,
        gap_tolerance: float = 0.1,
        stop_patience: int | None = None,
        diverge_factor: float = 4.0,
    ) -> None:
        self.patience = check_int("OverfitMonitor", patience, "patience")
        self.min_delta = _positive("min_delta", min_delta)
        self.gap_tolerance = _positive("gap_tolerance", gap_tolerance)
        self.stop_patience = (
            2 * self.patience
            if stop_patience is None
            else check_int("OverfitMonitor", stop_patience, "stop_patience")
        )
        self.diverge_factor = _positive("diverge_factor", diverge_factor)
        if self.diverge_factor <= 1.0:
            raise _fail(
                ValueError, "OverfitMonitor", "diverge_factor > 1", diverge_factor, "Use e.g. 4."
            )
        self.reset()

    def reset(self) -> None:
        """Forget every epoch seen so far."""
        self.history: list[tuple[float, float]] = []
        self._finite_train: list[float] = []
        self.best_val_loss = math.nan
        self.best_train_loss = math.nan
        self.best_epoch = -1
        self.epochs_since_best = 0
        self.last: Verdict | None = None

    def update(
        self,
        train_loss: float | torch.Tensor,
        val_loss: float | torch.Tensor,
        *,
        p: float | None = None,
        weight_decay: float | None = None,
    ) -> Verdict:
        """Record one epoch and return the verdict.

        Args:
            train_loss: Mean training loss of the epoch (float or 1-element tensor).
            val_loss: Validation loss after the epoch.
            p: Current dropout rate, to name the next rung of the ladder exactly.
            weight_decay: Current weight decay, to know whether to suggest it.

        Returns:
            The :class:`Verdict`. NaN or infinite losses give ``"diverged"``.

        Raises:
            TypeError: If a loss is not a number.
            ValueError: If ``p`` or ``weight_decay`` is invalid.
        """
        train, val = _loss("train_loss", train_loss), _loss("val_loss", val_loss)
        if p is not None:
            p = check_p("OverfitMonitor.update", p)
        if weight_decay is not None:
            weight_decay = _positive("weight_decay", weight_decay)
        epoch = len(self.history)
        self.history.append((train, val))
        finite = math.isfinite(train) and math.isfinite(val)
        exploded = (
            finite
            and self.best_train_loss > 0
            and train > self.diverge_factor * self.best_train_loss
        )
        if not finite or exploded:
            self.epochs_since_best += 1
            verdict = self._verdict(epoch, "diverged", train, val, math.nan, p, weight_decay)
            self.last = verdict
            return verdict

        self._finite_train.append(train)
        if not (self.best_train_loss <= train):
            self.best_train_loss = train
        if self.best_epoch < 0 or val < self.best_val_loss - self.min_delta:
            self.best_val_loss, self.best_epoch, self.epochs_since_best = val, epoch, 0
        else:
            self.epochs_since_best += 1
        window = self._finite_train[-(self.patience + 1) :]
        change = train - window[0] if len(window) == self.patience + 1 else math.nan
        rel_gap = (val - train) / max(abs(train), 1e-12)
        if self.epochs_since_best < self.patience:
            regime = "healthy"
        elif change < -self.min_delta or rel_gap > self.gap_tolerance:
            regime = "overfitting"
        else:
            regime = "underfitting"
        verdict = self._verdict(epoch, regime, train, val, change, p, weight_decay)
        self.last = verdict
        return verdict

    def _verdict(
        self,
        epoch: int,
        regime: str,
        train: float,
        val: float,
        change: float,
        p: float | None,
        weight_decay: float | None,
    ) -> Verdict:
        stop = regime == "diverged" or self.epochs_since_best >= self.stop_patience
        return Verdict(
            epoch=epoch,
            regime=regime,
            advice=tuple(self._advice(regime, p, weight_decay)),
            stop=stop,
            train_loss=train,
            val_loss=val,
            best_val_loss=self.best_val_loss,
            best_epoch=self.best_epoch,
            epochs_since_best=self.epochs_since_best,
            train_change=change,
            gap=val - train,
        )

    def _advice(self, regime: str, p: float | None, wd: float | None) -> list[Action]:
        if regime == "diverged":
            return [
                Action("stop", "Stop: the loss is NaN, infinite or exploding."),
                Action(
                    "lower_learning_rate",
                    "Restart from the last good checkpoint with a lower learning rate.",
                ),
                Action("check_inputs", "Check the data and loss for NaN/inf and clip gradients."),
            ]
        if regime == "overfitting":
            return self._ladder(p, wd)
        lower = _lower_rung(p)
        if regime == "healthy":
            actions = [Action("continue", "Validation loss is still falling: keep training.")]
            if p is None or p > 0:
                actions.insert(
                    0,
                    Action(
                        "lower_dropout",
                        "Validation loss is still falling, so there is no overfitting to fight "
                        "yet and dropout may be costing you; try a lower p.",
                        lower,
                    ),
                )
            return actions
        actions = []
        if p is None or p > 0:
            actions.append(
                Action(
                    "lower_dropout",
                    "Training and validation losses have both stalled close together: the model "
                    "underfits; lower dropout.",
                    lower,
                )
            )
        if wd is None or wd > 0:
            actions.append(Action("lower_weight_decay", "Lower or remove weight decay.", 0.0))
        actions.append(
            Action(
                "increase_capacity",
                "Use a larger model, train longer or raise the learning rate.",
            )
        )
        return actions

    def _ladder(self, p: float | None, wd: float | None) -> list[Action]:
        actions = []
        if p is None:
            actions.append(
                Action(
                    "raise_dropout",
                    "Validation has stalled while training improves: raise dropout one rung "
                    "(0.1 -> 0.2 -> 0.3).",
                )
            )
        else:
            higher = [r for r in _LADDER if r > p + 1e-9]
            if higher:
                actions.append(
                    Action(
                        "raise_dropout",
                        f"Validation has stalled while training improves: raise dropout from "
                        f"{p:g} to {higher[0]:g}.",
                        higher[0],
                    )
                )
        if wd is None or wd < _WEIGHT_DECAY:
            actions.append(
                Action(
                    "add_weight_decay",
                    f"Add weight decay: AdamW(weight_decay={_WEIGHT_DECAY:g}).",
                    _WEIGHT_DECAY,
                )
            )
        actions.append(
            Action(
                "stop_earlier_or_shrink",
                f"Stop earlier (best validation loss {self.best_val_loss:.4g} at epoch "
                f"{self.best_epoch}) or use a smaller model.",
                float(self.best_epoch),
            )
        )
        actions.append(Action("more_data", "Get more training data (usually the most effective)."))
        return actions

    def state_dict(self) -> dict[str, Any]:
        """Return the losses seen so far (plain Python types, JSON-safe)."""
        return {"history": [list(pair) for pair in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` by replaying the recorded epochs.

        Raises:
            ValueError: If ``state`` has no ``"history"`` list of pairs.
        """
        history = state.get("history") if isinstance(state, dict) else None
        if not isinstance(history, list) or any(
            not isinstance(pair, (list, tuple)) or len(pair) != 2 for pair in history
        ):
            raise _fail(
                ValueError,
                "OverfitMonitor.load_state_dict",
                "a dict with a 'history' list of (train, val) pairs",
                state,
                "Pass what OverfitMonitor.state_dict() returned.",
            )
        self.reset()
        for train, val in history:
            self.update(train, val)


def _lower_rung(p: float | None) -> float | None:
    if p is None:
        return None
    lower = [r for r in (0.0, *_LADDER) if r < p - 1e-9]
    return lower[-1] if lower else 0.0


def check_monitor(caller: str, monitor: object) -> OverfitMonitor | None:
    """Raise TypeError unless ``monitor`` is an :class:`OverfitMonitor` or ``None``."""
    if monitor is not None and not isinstance(monitor, OverfitMonitor):
        raise _fail(
            TypeError,
            caller,
            "monitor to be an OverfitMonitor or None",
            type(monitor).__name__,
            "Pass dropkit.training.OverfitMonitor(patience=3).",
        )
    return monitor

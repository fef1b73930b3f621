"""OverfitMonitor on synthetic curves for each regime, the ladder, divergence, resume."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit.training import REGIMES, OverfitMonitor, Verdict


def feed(monitor: OverfitMonitor, curve: list[tuple[float, float]], **kw) -> list[Verdict]:
    return [monitor.update(train, val, **kw) for train, val in curve]


def healthy_curve(n: int = 10) -> list[tuple[float, float]]:
    # Both fall steadily; val above train by a small margin.
    return [(1.0 / (1 + 0.3 * e), 1.05 / (1 + 0.3 * e) + 0.02) for e in range(n)]


def overfit_curve() -> list[tuple[float, float]]:
    # Train keeps falling; val reaches its minimum at epoch 3 and then rises.
    train = [1.0 * 0.8**e for e in range(10)]
    val = [1.0, 0.8, 0.7, 0.66, 0.67, 0.69, 0.72, 0.76, 0.8, 0.85]
    return list(zip(train, val))


def underfit_curve() -> list[tuple[float, float]]:
    # Both fall a little, then stall high and close together (tiny wiggles).
    train = [2.0, 1.7, 1.55, 1.5, 1.5004, 1.4998, 1.5002, 1.5, 1.4999]
    return [(t, t + 0.02) for t in train]


def test_healthy_while_validation_falls() -> None:
    verdicts = feed(OverfitMonitor(patience=3), healthy_curve(), p=0.2)
    assert {v.regime for v in verdicts} == {"healthy"}
    last = verdicts[-1]
    assert not last.stop and last.epochs_since_best == 0 and last.best_epoch == 9
    assert last.advice[0].name == "lower_dropout" and last.advice[0].value == 0.1
    assert "dropout may be costing you" in last.advice[0].message
    assert last.advice[-1].name == "continue"
    # Without dropout there is nothing to lower.
    assert [a.name for a in OverfitMonitor().update(1.0, 1.0, p=0.0).advice] == ["continue"]


def test_overfitting_detected_after_patience_and_ladder_escalates() -> None:
    monitor = OverfitMonitor(patience=3, stop_patience=5)
    verdicts = feed(monitor, overfit_curve(), p=0.1)
    regimes = [v.regime for v in verdicts]
    # best val at epoch 3; epochs 4, 5 are within patience; 6.. overfit.
    assert regimes == ["healthy"] * 6 + ["overfitting"] * 4
    v = verdicts[6]
    assert v.best_epoch == 3 and v.epochs_since_best == 3 and v.train_change < 0
    assert v.gap == pytest.approx(0.72 - 0.8**6)
    assert [a.name for a in v.advice] == [
        "raise_dropout",
        "add_weight_decay",
        "stop_earlier_or_shrink",
        "more_data",
    ]
    assert v.advice[0].value == 0.2 and v.advice[1].value == 0.1 and v.advice[2].value == 3.0
    assert "AdamW(weight_decay=0.1)" in v.advice[1].message
    assert [x.stop for x in verdicts] == [False] * 8 + [True] * 2


@pytest.mark.parametrize(
    ("p", "wd", "first"),
    [
        (None, None, ("raise_dropout", None)),
        (0.0, None, ("raise_dropout", 0.1)),
        (0.2, None, ("raise_dropout", 0.3)),
        (0.3, None, ("add_weight_decay", 0.1)),
        (0.5, 0.1, ("stop_earlier_or_shrink", 3.0)),
    ],
)
def test_ladder_rungs(p, wd, first) -> None:
    monitor = OverfitMonitor(patience=3)
    feed(monitor, overfit_curve()[:-1])
    train, val = overfit_curve()[-1]
    v = monitor.update(train, val, p=p, weight_decay=wd)
    assert v.regime == "overfitting"
    assert (v.advice[0].name, v.advice[0].value) == first
    assert v.advice[-1].name == "more_data"


def test_plateau_with_large_gap_is_overfitting_even_if_train_flat() -> None:
    # Train memorised (flat near 0.05), val flat far above it.
    curve = [(0.05, 0.9)] * 6
    assert feed(OverfitMonitor(patience=3), curve)[-1].regime == "overfitting"


def test_underfitting_when_both_stall_close_together() -> None:
    verdicts = feed(OverfitMonitor(patience=3, min_delta=1e-3), underfit_curve(), p=0.3)
    last = verdicts[-1]
    assert last.regime == "underfitting"
    assert abs(last.gap) / last.train_loss <= 0.1
    names = [a.name for a in last.advice]
    assert names == ["lower_dropout", "lower_weight_decay", "increase_capacity"]
    assert last.advice[0].value == 0.2
    # Early epochs, while losses still fall fast, are healthy.
    assert verdicts[0].regime == verdicts[1].regime == "healthy"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_losses_give_diverged_verdict(bad: float) -> None:
    monitor = OverfitMonitor()
    monitor.update(1.0, 1.1)
    v = monitor.update(bad, 1.0)
    assert v.regime == "diverged" and v.stop and v.advice[0].name == "stop"
    w = monitor.update(0.9, bad)
    assert w.regime == "diverged" and w.stop
    # The best epoch is not corrupted by the NaNs; a finite epoch is judged normally.
    assert monitor.best_val_loss == 1.1 and monitor.best_epoch == 0
    assert monitor.update(0.8, 0.9).regime == "healthy"
    assert "diverged" in str(v)


def test_exploding_train_loss_is_diverged() -> None:
    monitor = OverfitMonitor(diverge_factor=4.0)
    feed(monitor, [(1.0, 1.0), (0.5, 0.6)])
    assert monitor.update(1.9, 1.0).regime != "diverged"
    assert monitor.update(2.1, 1.0).regime == "diverged"


def test_tensor_losses_accepted_and_types_checked() -> None:
    monitor = OverfitMonitor()
    assert monitor.update(torch.tensor(0.5), torch.tensor([0.6])).val_loss == pytest.approx(0.6)
    with pytest.raises(
        TypeError, match="OverfitMonitor.update: expected train_loss to be a float, but got 'str'"
    ):
        monitor.update("0.5", 0.6)
    with pytest.raises(
        ValueError, match=r"OverfitMonitor.update: expected p in \[0, 1\), but got 1.2"
    ):
        monitor.update(0.5, 0.6, p=1.2)
    assert len(monitor.history) == 1  # failed updates recorded nothing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patience": 0}, "OverfitMonitor: expected patience >= 1, but got 0"),
        ({"min_delta": -1.0}, "OverfitMonitor: expected min_delta >= 0, but got -1.0"),
        ({"diverge_factor": 1.0}, "OverfitMonitor: expected diverge_factor > 1, but got 1.0"),
        (
            {"gap_tolerance": float("nan")},
            "OverfitMonitor: expected gap_tolerance >= 0, but got nan",
        ),
    ],
)
def test_bad_config(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        OverfitMonitor(**kwargs)


def test_state_dict_replay_matches_uninterrupted() -> None:
    curve = overfit_curve()
    full = OverfitMonitor(patience=2)
    expected = feed(full, curve)
    first = OverfitMonitor(patience=2)
    feed(first, curve[:5])
    resumed = OverfitMonitor(patience=2)
    resumed.load_state_dict(first.state_dict())
    assert feed(resumed, curve[5:]) == expected[5:]
    with pytest.raises(ValueError, match="load_state_dict: expected a dict with a 'history' list"):
        resumed.load_state_dict({"history": [1, 2]})


def test_regime_vocabulary_and_str() -> None:
    assert REGIMES == ("underfitting", "healthy", "overfitting", "diverged")
    text = str(OverfitMonitor().update(1.0, 1.2, p=0.1))
    assert text.startswith("epoch 0: healthy") and "Next:" in text
    assert not math.isnan(OverfitMonitor().update(1.0, 1.2).best_val_loss)


def test_callbacks_reject_a_non_monitor() -> None:
    from dropkit.integrations.hf import DropoutCallback as HFCallback
    from dropkit.integrations.lightning import DropoutCallback as LightningCallback

    for callback in (HFCallback, LightningCallback):
        with pytest.raises(
            TypeError,
            match=r"DropoutCallback: expected monitor to be an OverfitMonitor or None, but got "
            r"'str'. Pass dropkit.training.OverfitMonitor\(patience=3\).",
        ):
            callback(0.1, monitor="patience=3")

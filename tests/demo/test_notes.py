"""The demo's OverfitMonitor notes never contradict the rate the sweep chose."""

from __future__ import annotations

import pytest

from dropkit.demo.pipeline import monitor_note

TRIALS = [
    {"p": 0.0, "value": 0.050},
    {"p": 0.2, "value": 0.034},
    {"p": 0.5, "value": 0.042},
]


def _verdict(action: str, p: float, regime: str = "overfitting") -> dict:
    return {"regime": regime, "action": action, "p": p, "message": "Add weight decay."}


@pytest.mark.parametrize(
    ("action", "p_now", "expected"),
    [
        # the sweep tried the higher rate and it was worse than p*
        (
            "raise_dropout",
            0.2,
            "; the best rate above 0.2 that the sweep measured, p = 0.5, reached validation "
            "NLL 0.042 against 0.034 at p* = 0.2, so p* stands.",
        ),
        # lower rate (p = 0) worse than p*
        (
            "lower_dropout",
            0.2,
            "; the best rate below 0.2 that the sweep measured, p = 0, reached validation NLL "
            "0.050 against 0.034 at p* = 0.2, so p* stands.",
        ),
        # another run (no dropout) that should raise p: the sweep agrees
        (
            "raise_dropout",
            0.0,
            "; the sweep agrees: its chosen p* = 0.2 lies above this run's rate (validation "
            "NLL 0.034).",
        ),
        (
            "raise_dropout",
            0.5,
            "; the sweep tried no rate above 0.5.",
        ),
    ],
)
def test_note_reads_the_advice_against_the_sweep(action: str, p_now: float, expected: str) -> None:
    note = monitor_note("run", _verdict(action, p_now), TRIALS, 0.2)
    assert note is not None and note.endswith(expected), note
    assert note.startswith(f"OverfitMonitor on run (final p {p_now:.2g}): overfitting, it would")


def test_no_dropout_better_than_p_star_is_explained() -> None:
    trials = [{"p": 0.0, "value": 0.030}, *TRIALS[1:]]
    note = monitor_note("fixed p=0.2", _verdict("lower_dropout", 0.2, "healthy"), trials, 0.2)
    assert note is not None
    assert "p = 0, reached validation NLL 0.030 against 0.034 at p* = 0.2: no dropout fits" in note
    assert "kept so that MC dropout has something to sample" in note


def test_other_advice_and_rounding() -> None:
    note = monitor_note("ConcreteDropout", _verdict("add_weight_decay", 0.268361), TRIALS, 0.2)
    assert note == (
        "OverfitMonitor on ConcreteDropout (final p 0.27): overfitting; next step: "
        "Add weight decay."
    )
    assert monitor_note("x", None, TRIALS, 0.2) is None

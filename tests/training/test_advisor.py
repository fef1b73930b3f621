"""recommend_rate: the scenario table and the size rule."""

from __future__ import annotations

import pytest
from torch import nn

from dropkit.training import SCENARIOS, recommend_rate

TABLE = {
    "llm-pretraining": (0.0, 0.0),
    "small-transformer": (0.1, 0.1),
    "fine-tuning-small-data": (0.05, 0.1),
    "classification-head": (0.1, 0.3),
    "mc-dropout": (0.1, 0.2),
    "vit-augmented": (0.0, 0.1),
}


@pytest.mark.parametrize(("name", "expected"), TABLE.items())
def test_scenarios(name: str, expected: tuple[float, float]) -> None:
    r = recommend_rate(name)
    assert (r.low, r.high) == expected and r.scenario == name and len(r.reason) > 20
    assert r.low <= r.p <= r.high


def test_table_complete() -> None:
    assert set(SCENARIOS) == set(TABLE)


def test_unknown_scenario_lists_known() -> None:
    with pytest.raises(
        ValueError,
        match=r"recommend_rate: expected a known scenario, but got 'bert'\. "
        r"Known scenarios: llm-pretraining, small-transformer",
    ):
        recommend_rate("bert")


@pytest.mark.parametrize(
    ("params", "size", "expected"),
    [
        (1_000_000, 50_000_000, (0.0, 0.0)),  # 50 per parameter
        (1_000_000, 20_000_000, (0.0, 0.0)),  # boundary: 20 -> data-rich
        (1_000_000, 5_000_000, (0.0, 0.1)),
        (1_000_000, 50_000, (0.1, 0.2)),
        (1_000_000, 10_000, (0.1, 0.2)),  # boundary: 0.01
        (1_000_000, 9_999, (0.2, 0.3)),
    ],
)
def test_size_rule(params: int, size: int, expected: tuple[float, float]) -> None:
    r = recommend_rate(params, dataset_size=size)
    assert (r.low, r.high) == expected
    assert f"{params:,} parameters" in r.reason


def test_from_module_counts_parameters() -> None:
    net = nn.Linear(100, 10)  # 1010 parameters
    r = recommend_rate(net, dataset_size=1797)
    assert (r.low, r.high) == (0.0, 0.1) and "1,010 parameters" in r.reason


def test_pretrained_rule() -> None:
    small = recommend_rate(22_700_000, dataset_size=3_000, pretrained=True)
    assert (small.low, small.high, small.scenario) == (0.05, 0.1, "fine-tuning-small-data")
    big = recommend_rate(22_700_000, dataset_size=100_000, pretrained=True)
    assert (big.low, big.high) == (0.1, 0.1)


def test_model_needs_dataset_size_and_types_checked() -> None:
    with pytest.raises(
        ValueError,
        match=r"recommend_rate: expected dataset_size with a model, but got None\. "
        r"Pass dataset_size=",
    ):
        recommend_rate(nn.Linear(2, 2))
    with pytest.raises(
        TypeError, match="recommend_rate: expected parameter count to be an int, but got 1.5"
    ):
        recommend_rate(1.5, dataset_size=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="recommend_rate: expected dataset_size >= 1, but got 0"):
        recommend_rate(10, dataset_size=0)

"""Predictive entropy and mutual information: one implementation, naive float64 reference."""

from __future__ import annotations

import math

import pytest
import torch

import dropkit.metrics as M
from dropkit.active import bald, max_entropy
from dropkit.uncertainty.result import MCResult

# A sum of C=4 terms of size <= 1 in float64: a few eps of the sum's size.
TOL = 16 * torch.finfo(torch.float64).eps


def _h(row: list[float]) -> float:
    return -sum(p * math.log(p) for p in row if p > 0)


def _samples(generator: torch.Generator) -> torch.Tensor:
    logits = 3.0 * torch.randn(5, 7, 4, generator=generator, dtype=torch.float64)
    return torch.softmax(logits, -1)


def test_match_naive_reference(generator: torch.Generator) -> None:
    x = _samples(generator)
    pe, mi = M.predictive_entropy(x), M.mutual_information(x)
    for i in range(x.shape[1]):
        rows = x[:, i].tolist()
        mean = [sum(col) / len(rows) for col in zip(*rows)]
        expected = sum(_h(r) for r in rows) / len(rows)
        assert pe[i].item() == pytest.approx(_h(mean), abs=TOL)
        assert mi[i].item() == pytest.approx(_h(mean) - expected, abs=TOL)


def test_acquisition_names_are_aliases(generator: torch.Generator) -> None:
    x = _samples(generator)
    assert torch.equal(bald(x), M.mutual_information(x))
    assert torch.equal(max_entropy(x), M.predictive_entropy(x))
    # MCResult summaries come from the same functions, bit for bit
    r = MCResult.from_samples(x)
    assert torch.equal(r.mutual_information, M.mutual_information(x))
    assert torch.equal(r.predictive_entropy, M.predictive_entropy(x))
    assert torch.equal(M.mutual_information(r), r.mutual_information)


def test_errors_name_the_function_called() -> None:
    with pytest.raises(ValueError, match=r"^mutual_information: expected samples of shape"):
        M.mutual_information(torch.full((3, 2), 0.5))
    with pytest.raises(ValueError, match=r"^bald: expected samples of shape"):
        bald(torch.full((3, 2), 0.5))
    with pytest.raises(ValueError, match=r"^predictive_entropy: expected rows of probs summing"):
        M.predictive_entropy(torch.ones(3, 2))

"""Distances between predictives against naive Python-float loops."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit.metrics import gaussian_w2, std_correlation, top1_agreement, total_variation
from dropkit.uncertainty.result import MCResult


def probs(generator, n=50, c=4):
    return torch.softmax(3 * torch.randn(n, c, generator=generator, dtype=torch.float64), -1)


def test_agreement_and_tv_match_loops(generator):
    p, q = probs(generator), probs(generator)
    agree = sum(
        max(range(4), key=lambda c: p[i, c].item()) == max(range(4), key=lambda c: q[i, c].item())
        for i in range(50)
    )
    tv = sum(0.5 * sum(abs(p[i, c].item() - q[i, c].item()) for c in range(4)) for i in range(50))
    assert top1_agreement(p, q) == agree / 50  # counts: exact
    # 50 x 4 float64 additions in another order: 200 * eps relative
    assert total_variation(p, q) == pytest.approx(tv / 50, rel=200 * 2.2e-16)
    assert top1_agreement(p, p) == 1.0 and total_variation(p, p) == 0.0


def test_samples_and_mcresult_are_averaged(generator):
    s = torch.stack([probs(generator) for _ in range(3)])
    q = probs(generator)
    res = MCResult.from_samples(s)
    assert total_variation(s, q) == pytest.approx(total_variation(s.mean(0), q), abs=1e-15)
    assert top1_agreement(res, q) == top1_agreement(s.mean(0), q)


def test_w2_and_correlation_match_loops(generator):
    m1, m2 = torch.randn(30, generator=generator), torch.randn(30, generator=generator)
    s1, s2 = torch.rand(30, generator=generator), torch.rand(30, generator=generator)
    w2 = sum(
        math.sqrt((m1[i].item() - m2[i].item()) ** 2 + (s1[i].item() - s2[i].item()) ** 2)
        for i in range(30)
    )
    assert gaussian_w2(m1, s1, m2, s2) == pytest.approx(w2 / 30, rel=100 * 2.2e-16)
    a, b = s1.double().tolist(), s2.double().tolist()
    ma, mb = sum(a) / 30, sum(b) / 30
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    assert std_correlation(s1, s2) == pytest.approx(cov / math.sqrt(va * vb), rel=1e-12)
    assert math.isnan(std_correlation(torch.ones(5), torch.rand(5, generator=generator)))


def test_errors():
    p = torch.tensor([[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"total_variation: expected reference with the shape"):
        total_variation(p, torch.tensor([[0.2, 0.3, 0.5]]))
    with pytest.raises(ValueError, match=r"top1_agreement: expected rows of reference summing"):
        top1_agreement(p, torch.tensor([[2.0, 1.0]]))
    with pytest.raises(ValueError, match=r"gaussian_w2: expected non-negative ref_std"):
        gaussian_w2(torch.zeros(2), torch.ones(2), torch.zeros(2), -torch.ones(2))
    with pytest.raises(ValueError, match=r"gaussian_w2: expected finite mean"):
        gaussian_w2(torch.tensor([float("nan")]), torch.ones(1), torch.zeros(1), torch.ones(1))
    with pytest.raises(ValueError, match=r"std_correlation: expected ref_std with the shape"):
        std_correlation(torch.ones(3), torch.ones(4))

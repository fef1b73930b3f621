from __future__ import annotations

import pytest
import torch

from dropkit import metrics

from . import _reference as ref


def test_aurc_hand_computed():
    p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0])
    rc = metrics.risk_coverage(p, y)
    # accept 0.9 (right), then 0.8 (wrong), then 0.6 (right)
    assert rc.coverage.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert rc.risk.tolist() == pytest.approx([0.0, 0.5, 1 / 3])
    assert metrics.aurc(p, y) == pytest.approx((0 + 1 / 2 + 1 / 3) / 3, abs=1e-15)


def test_ties_average_over_orderings():
    # two tied inputs, one right and one wrong: orders give risks (0, 1/2) or (1, 1/2)
    p = torch.tensor([[0.7, 0.3], [0.7, 0.3]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    assert metrics.aurc(p, y) == pytest.approx(((0 + 0.5) / 2 + (1 + 0.5) / 2) / 2, abs=1e-15)
    rc = metrics.risk_coverage(p, y)
    assert rc.coverage.tolist() == [1.0] and rc.risk.tolist() == [0.5]


@pytest.mark.parametrize("trial", range(5))
def test_aurc_matches_brute_force_over_tie_orders(generator, trial):
    n = 6
    u = torch.randint(0, 3, (n,), generator=generator).double()
    p = torch.softmax(torch.randn(n, 3, generator=generator, dtype=torch.float64), -1)
    y = torch.randint(0, 3, (n,), generator=generator)
    errors = (p.argmax(-1) != y).double().tolist()
    expected = ref.aurc_all_orders(u.tolist(), errors)
    assert metrics.aurc(p, y, uncertainty=u) == pytest.approx(expected, abs=1e-12)
    # default uncertainty = 1 - max prob, continuous so no ties
    conf = p.max(-1).values
    assert metrics.aurc(p, y) == pytest.approx(
        ref.aurc_all_orders((1 - conf).tolist(), errors), abs=1e-12
    )


def test_bad_uncertainty_raises():
    p = torch.tensor([[0.6, 0.4]])
    with pytest.raises(
        ValueError, match=r"^risk_coverage: expected uncertainty of shape \(1,\), but got \(2,\)"
    ):
        metrics.risk_coverage(p, torch.tensor([0]), uncertainty=torch.zeros(2))
    with pytest.raises(ValueError, match=r"^risk_coverage: expected finite uncertainty"):
        metrics.aurc(p, torch.tensor([0]), uncertainty=torch.tensor([float("inf")]))

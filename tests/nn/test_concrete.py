"""ConcreteDropout: the relaxation, the regulariser, the p property and learning p."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dropkit.functional as DF
from dropkit.nn import ConcreteDropout


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_p_property_round_trips_and_rejects_bad_values():
    cd = ConcreteDropout(nn.Linear(3, 1), p=0.25)
    assert cd.p == pytest.approx(0.25)
    cd.p = 0.4
    assert cd.p == pytest.approx(0.4) and cd.p_logit.requires_grad
    with pytest.raises(ValueError, match=r"ConcreteDropout: expected p in \[0, 1\), but got 2\. "):
        cd.p = 2
    assert cd.p == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"but got 1\.0\. Use a probability"):
        cd.p = 1.0
    assert cd.p == pytest.approx(0.4)


def test_p_zero_is_an_identity_fixed_point_kept_away_from_optimisers():
    lin = nn.Linear(3, 2)
    cd = ConcreteDropout(lin, p=0.0)
    x = torch.randn(4, 3)
    assert torch.equal(cd(x), lin(x))
    assert cd.p == 0.0 and not cd.p_logit.requires_grad
    reg = cd.regularization()
    assert torch.isfinite(reg)
    opt = torch.optim.SGD(cd.parameters(), lr=0.1, weight_decay=0.1)
    (cd(x).sum() + reg).backward()
    opt.step()
    assert cd.p == 0.0


def test_regularization_matches_the_paper_formula():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).double()
    cd = ConcreteDropout(lin, p=0.3, weight_regularizer=1e-2, dropout_regularizer=1e-1).double()
    cd(torch.randn(7, 5, dtype=torch.float64))
    p = cd.p  # the float32 logit of 0.3, widened
    assert p == pytest.approx(0.3)
    square = sum(float((w.detach() ** 2).sum()) for w in lin.parameters())
    expected = 1e-2 * square / (1 - p) + 1e-1 * 5 * (p * math.log(p) + (1 - p) * math.log(1 - p))
    assert cd.regularization().item() == pytest.approx(expected, rel=1e-10)


def test_regularization_needs_an_input_size():
    cd = ConcreteDropout(nn.Linear(3, 1))
    with pytest.raises(
        RuntimeError,
        match=r"ConcreteDropout.regularization: expected a known input size, but got None\. "
        r"Run one forward pass first or pass input_dim= to the constructor\.",
    ):
        cd.regularization()
    assert ConcreteDropout(nn.Linear(3, 1), input_dim=3).regularization().ndim == 0


def test_relaxed_mask_matches_a_naive_reference():
    x = torch.rand(6, 5, dtype=torch.float64) + 0.5
    logit = torch.tensor(math.log(0.3 / 0.7), dtype=torch.float64)
    out = DF.concrete_dropout(x, logit, 0.1, generator=gen(3))
    u = torch.rand(x.shape, dtype=torch.float64, generator=gen(3)).clamp(1e-7, 1 - 1e-7)
    for idx in range(x.numel()):
        ui = u.reshape(-1)[idx].item()
        z = 1 / (
            1 + math.exp(-(math.log(0.3) - math.log(0.7) + math.log(ui) - math.log(1 - ui)) / 0.1)
        )
        assert out.reshape(-1)[idx].item() == pytest.approx(
            x.reshape(-1)[idx].item() * (1 - z) / 0.7
        )


def test_gradient_flows_to_the_drop_rate():
    x = torch.rand(3, 4, dtype=torch.float64) + 0.5

    def fn(logit):
        return DF.concrete_dropout(x, logit, 0.1, generator=gen(1))

    logit = torch.tensor(-0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (logit,))


def _fit(n: int, seed: int = 0, steps: int = 300, p0: float = 0.2) -> tuple[float, float]:
    """Fit y = sin(x) + N(0, 0.1^2) with concrete dropout, regularisers as in Gal et al."""
    torch.manual_seed(seed)
    x = torch.rand(n, 1) * 4 - 2
    y = torch.sin(x) + 0.1 * torch.randn(n, 1)
    wr, dr = 1e-2 / n, 2.0 / n  # l^2 / N and 2 / (tau N), tau = 1
    g = gen(seed)
    c1 = ConcreteDropout(nn.Linear(32, 32), p0, 0.1, wr, dr, generator=g)
    c2 = ConcreteDropout(nn.Linear(32, 1), p0, 0.1, wr, dr, generator=g)
    model = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), c1, nn.ReLU(), c2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, n, (min(n, 128),), generator=g)
        loss = ((model(x[idx]) - y[idx]) ** 2).mean() + c1.regularization() + c2.regularization()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return c1.p, c2.p


def test_learned_p_falls_with_plenty_of_data_and_rises_with_little():
    # With 5000 points the function is pinned down and dropout noise only hurts
    # the fit: p must fall from 0.2. With 10 points the posterior is wide and the
    # dropout entropy term (weight 2 / N) dominates: p must rise towards 0.5.
    many = _fit(5000)
    few = _fit(10)
    assert max(many) < 0.15, many
    assert min(few) > 0.4, few

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dropkit import metrics

from . import _reference as ref


def _grid_probs(generator: torch.Generator, n: int, c: int, step: int = 20) -> torch.Tensor:
    """Probabilities on a 1/step grid, so confidences hit bin edges and tie often."""
    raw = torch.randint(0, step, (n, c), generator=generator).double() + 1e-9
    p = torch.zeros(n, c, dtype=torch.float64)
    for i in range(n):
        # distribute `step` units over the classes proportionally to raw
        units = torch.floor(raw[i] / raw[i].sum() * step)
        units[int(torch.argmax(raw[i]))] += step - units.sum()
        p[i] = units / step
    return p


@pytest.mark.parametrize("binning", ["width", "mass"])
@pytest.mark.parametrize("n_bins", [1, 3, 10, 15])
@pytest.mark.parametrize("c", [2, 4])
def test_ece_mce_match_naive_reference(generator, binning, n_bins, c):
    for trial in range(3):
        n = 7 + 13 * trial
        if trial == 2:
            p = torch.softmax(2 * torch.randn(n, c, generator=generator, dtype=torch.float64), -1)
        else:
            p = _grid_probs(generator, n, c)
        y = torch.randint(0, c, (n,), generator=generator)
        conf, hit = ref.top_label(p.tolist(), y.tolist())
        assert metrics.ece(p, y, n_bins=n_bins, binning=binning) == pytest.approx(
            ref.ece(conf, hit, n_bins, binning), abs=1e-12
        )
        assert metrics.mce(p, y, n_bins=n_bins, binning=binning) == pytest.approx(
            ref.mce(conf, hit, n_bins, binning), abs=1e-12
        )
        assert metrics.classwise_ece(p, y, n_bins=n_bins, binning=binning) == pytest.approx(
            ref.classwise_ece(p.tolist(), y.tolist(), n_bins, binning), abs=1e-12
        )


def test_ece_hand_computed():
    p = torch.tensor([[0.9, 0.1], [0.6, 0.4]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    # bin (0.8, 0.9]: conf 0.9, acc 1; bin (0.5, 0.6]: conf 0.6, acc 0
    assert metrics.ece(p, y, n_bins=10) == pytest.approx(0.5 * 0.1 + 0.5 * 0.6, abs=1e-15)
    assert metrics.mce(p, y, n_bins=10) == pytest.approx(0.6, abs=1e-15)
    # a single bin pools everything: |0.5 - 0.75|
    assert metrics.ece(p, y, n_bins=1) == pytest.approx(0.25, abs=1e-15)


def test_bins_are_closed_on_the_right():
    # 0.7 sits on an edge of 10 equal-width bins: it belongs to (0.6, 0.7]
    p = torch.tensor([[0.7, 0.3], [0.3, 0.7], [0.75, 0.25]], dtype=torch.float64)
    d = metrics.reliability_diagram(p, torch.tensor([0, 0, 0]), n_bins=10)
    assert d.counts.tolist() == [0, 0, 0, 0, 0, 0, 2, 1, 0, 0]
    assert d.edges.tolist() == [b / 10 for b in range(11)]
    assert d.accuracy[6].item() == 0.5 and d.confidence[6].item() == pytest.approx(0.7)
    # empty bins: NaN confidence and accuracy, count 0
    assert math.isnan(d.confidence[0].item()) and math.isnan(d.accuracy[9].item())


def test_mass_binning_edges_ties_and_order_invariance(generator):
    conf = torch.tensor([0.5, 0.6, 0.6, 0.6, 0.9, 1.0], dtype=torch.float64)
    p = torch.stack([conf, 1 - conf], 1)
    y = torch.tensor([0, 1, 0, 0, 0, 0])
    d = metrics.reliability_diagram(p, y, n_bins=3, binning="mass")
    # inner edges c_(ceil(6/3)) = c_(2) = 0.6 and c_(4) = 0.6: the tie shares one bin
    assert d.edges.tolist() == [0.0, 0.6, 0.6, 1.0]
    assert d.counts.tolist() == [4, 0, 2]
    perm = torch.randperm(6, generator=generator)
    assert metrics.ece(p[perm], y[perm], n_bins=3, binning="mass") == pytest.approx(
        metrics.ece(p, y, n_bins=3, binning="mass"), abs=1e-15
    )
    # by hand: bin [0, 0.6] holds 0.5 (hit), 0.6 (miss), 0.6, 0.6 (hits): conf 0.575, acc 0.75;
    # bin (0.6, 1] holds 0.9, 1.0 (hits): conf 0.95, acc 1
    assert metrics.ece(p, y, n_bins=3, binning="mass") == pytest.approx(
        4 / 6 * 0.175 + 2 / 6 * 0.05, abs=1e-15
    )


def test_samples_are_averaged_first_and_mcresult_accepted(generator):
    from dropkit.uncertainty.result import MCResult

    s = torch.softmax(torch.randn(5, 30, 3, generator=generator, dtype=torch.float64), -1)
    y = torch.randint(0, 3, (30,), generator=generator)
    mean = s.mean(0)
    for fn in (metrics.ece, metrics.brier, metrics.nll, metrics.classwise_ece, metrics.accuracy):
        assert fn(s, y) == pytest.approx(fn(mean, y), abs=1e-14)
        assert fn(MCResult.from_samples(s), y) == pytest.approx(fn(mean, y), abs=1e-14)
    # numpy input works the same
    assert metrics.brier(mean.numpy(), y.numpy()) == pytest.approx(metrics.brier(mean, y))


def test_brier_nll_accuracy_match_reference(generator):
    p = torch.softmax(torch.randn(40, 5, generator=generator, dtype=torch.float64), -1)
    y = torch.randint(0, 5, (40,), generator=generator)
    assert metrics.brier(p, y) == pytest.approx(ref.brier(p.tolist(), y.tolist()), abs=1e-13)
    assert metrics.nll(p, y) == pytest.approx(ref.nll(p.tolist(), y.tolist()), abs=1e-13)
    hits = [
        1.0 if max(range(5), key=lambda c: r[c]) == t else 0.0
        for r, t in zip(p.tolist(), y.tolist())
    ]
    assert metrics.accuracy(p, y) == pytest.approx(sum(hits) / 40, abs=1e-15)


def test_brier_nll_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.25, 0.75]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    assert metrics.brier(p, y) == pytest.approx((0 + 0.75**2 * 2) / 2, abs=1e-15)
    assert metrics.nll(p, y) == pytest.approx(math.log(4) / 2, abs=1e-15)
    # a true class with probability exactly 0: inf, not NaN and not clipped
    assert metrics.nll(p, torch.tensor([1, 0])) == math.inf


def test_no_clipping_of_confidence():
    # float32 rounding can make a confidence 1.0000001; it is neither clipped nor rejected
    p = torch.tensor([[1.0000001, 0.0]], dtype=torch.float64)
    d = metrics.reliability_diagram(p, torch.tensor([0]), n_bins=4)
    assert d.counts.tolist() == [0, 0, 0, 1]
    assert d.confidence[3].item() == 1.0000001


BAD = "Pass probabilities"


@pytest.mark.parametrize("fn", [metrics.ece, metrics.mce, metrics.brier, metrics.nll])
def test_bad_probabilities_raise(fn):
    y = torch.tensor([0, 1])
    name = fn.__name__
    with pytest.raises(
        ValueError,
        match=rf"^{name}: expected rows of probs summing to 1 \(tolerance 0.001\), "
        rf"but got 'row 1 summing to 1.2'\. {BAD}",
    ):
        fn(torch.tensor([[0.5, 0.5], [0.6, 0.6]]), y)
    with pytest.raises(
        ValueError,
        match=rf"^{name}: expected finite probs, but got '1 non-finite value\(s\) such as nan'",
    ):
        fn(torch.tensor([[0.5, 0.5], [float("nan"), 0.5]]), y)
    with pytest.raises(
        ValueError, match=rf"^{name}: expected non-negative probs, but got 'minimum -0.5'"
    ):
        fn(torch.tensor([[1.5, -0.5], [0.5, 0.5]]), y)
    with pytest.raises(ValueError, match=rf"^{name}: expected target in \[0, 1\], but got 2\."):
        fn(torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=rf"^{name}: expected target of shape \(2,\) matching"):
        fn(torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([0, 1, 1]))
    with pytest.raises(
        TypeError,
        match=rf"^{name}: expected integer class indices as target, but got 'torch.float32'",
    ):
        fn(torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=rf"^{name}: expected probs of shape \(N, C\) or samples"):
        fn(torch.tensor([0.5, 0.5]), y)


def test_tolerance_is_documented_value():
    assert metrics.PROB_SUM_ATOL == 1e-3
    # inside the tolerance: accepted
    metrics.ece(torch.tensor([[0.5, 0.5009]]), torch.tensor([0]))


def test_bad_options_raise():
    p, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    with pytest.raises(
        ValueError,
        match=r"^ece: expected binning to be one of \['mass', 'width'\], but got 'quantile'",
    ):
        metrics.ece(p, y, binning="quantile")
    with pytest.raises(ValueError, match=r"^ece: expected n_bins to be an int >= 1, but got 0\."):
        metrics.ece(p, y, n_bins=0)
    with pytest.raises(
        TypeError, match=r"^ece: expected probs to be a torch.Tensor or numpy array, but got 'str'"
    ):
        metrics.ece("probs", y)
    with pytest.raises(
        ValueError,
        match=r"^brier: expected a classification MCResult, but got \"task='regression'\"",
    ):
        from dropkit.uncertainty.result import MCResult

        metrics.brier(MCResult.from_samples(torch.zeros(2, 1), task="regression"), y)
    assert np.isfinite(metrics.ece(p, y))

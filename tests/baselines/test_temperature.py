from __future__ import annotations

import math

import pytest
import torch

from dropkit.baselines import TemperatureScaling


def _naive_nll(logits, labels, t):
    total = 0.0
    for row, y in zip(logits, labels):
        m = max(v / t for v in row)
        lse = m + math.log(sum(math.exp(v / t - m) for v in row))
        total += lse - row[y] / t
    return total / len(labels)


def test_hand_computed_temperature():
    z = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [4.0, 0.0]])
    ts = TemperatureScaling().fit(z, torch.tensor([0, 1, 1, 0]))
    # 3 of 4 right with the same margin: the MLE sets sigmoid(4 / T) = 3/4
    assert ts.temperature == pytest.approx(4 / math.log(3), rel=1e-7)


def test_fit_matches_naive_grid_search(generator):
    n, c = 120, 4
    z = 3 * torch.randn(n, c, generator=generator, dtype=torch.float64)
    # labels drawn from softmax(z / 2): the generating temperature is 2
    y = torch.multinomial(torch.softmax(z / 2, -1), 1, generator=generator).squeeze(1)
    ts = TemperatureScaling().fit(z, y)
    zl, yl = z.tolist(), y.tolist()
    grid = [math.exp(-1 + 3 * k / 600) for k in range(601)]  # T in [e^-1, e^2]
    losses = [_naive_nll(zl, yl, t) for t in grid]
    best = min(range(len(grid)), key=losses.__getitem__)
    assert grid[best - 1] <= ts.temperature <= grid[best + 1]
    assert _naive_nll(zl, yl, ts.temperature) <= losses[best] + 1e-12
    # transform / predict_proba
    assert torch.allclose(ts.transform(z), z / ts.temperature)
    assert torch.allclose(ts.predict_proba(z), torch.softmax(z / ts.temperature, -1))


def test_fit_probs_on_mc_mean_equals_fit_on_log_probs(generator):
    s = torch.softmax(2 * torch.randn(6, 50, 3, generator=generator, dtype=torch.float64), -1)
    y = torch.randint(0, 3, (50,), generator=generator)
    mean = s.mean(0)
    a = TemperatureScaling().fit_probs(s, y)  # samples are averaged first
    b = TemperatureScaling().fit(mean.log(), y)
    assert a.temperature == pytest.approx(b.temperature, rel=1e-9)
    out = a.transform_probs(mean)
    expected = mean ** (1 / a.temperature)
    assert torch.allclose(out, expected / expected.sum(-1, keepdim=True), atol=1e-12)


def test_accuracy_unchanged_and_errors(generator):
    z = torch.randn(30, 5, generator=generator)
    y = torch.randint(0, 5, (30,), generator=generator)
    ts = TemperatureScaling()
    with pytest.raises(
        RuntimeError,
        match=r"^TemperatureScaling: expected a fitted temperature, but got an unfitted instance\. "
        r"Call fit\(logits, target\) or fit_probs\(probs, target\) first\.$",
    ):
        ts.transform(z)
    ts.fit(z, y)
    assert torch.equal(ts.predict_proba(z).argmax(-1), z.argmax(-1))
    bad = z.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^TemperatureScaling.fit: expected finite logits"):
        TemperatureScaling().fit(bad, y)
    with pytest.raises(
        ValueError, match=r"^TemperatureScaling.fit: expected target in \[0, 4\], but got 7"
    ):
        TemperatureScaling().fit(z, torch.full((30,), 7))
    with pytest.raises(
        ValueError, match=r"^TemperatureScaling.fit: expected logits of shape \(N, C\)"
    ):
        TemperatureScaling().fit(z[None], y)
    with pytest.raises(
        ValueError,
        match=r"^TemperatureScaling.fit_probs: expected non-negative probs, but got 'minimum",
    ):
        TemperatureScaling().fit_probs(z, y)

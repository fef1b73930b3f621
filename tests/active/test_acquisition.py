from __future__ import annotations

import itertools
import math

import pytest
import torch

from dropkit.active import (
    bald,
    batch_bald,
    margin,
    max_entropy,
    mean_std,
    random,
    top_k,
    variation_ratio,
)
from dropkit.uncertainty.result import MCResult


def _h(row):
    return -sum(p * math.log(p) for p in row if p > 0)


def _samples(generator, s=6, n=9, c=3, scale=2.0):
    return torch.softmax(scale * torch.randn(s, n, c, generator=generator, dtype=torch.float64), -1)


def test_single_point_scores_match_naive_reference(generator):
    x = _samples(generator)
    xs = x.tolist()
    s_count, n, c = x.shape
    for i in range(n):
        rows = [xs[s][i] for s in range(s_count)]
        mean = [sum(r[k] for r in rows) / s_count for k in range(c)]
        expected_bald = _h(mean) - sum(_h(r) for r in rows) / s_count
        assert bald(x)[i].item() == pytest.approx(expected_bald, abs=1e-13)
        assert max_entropy(x)[i].item() == pytest.approx(_h(mean), abs=1e-13)
        votes = [max(range(c), key=lambda k: r[k]) for r in rows]
        mode_count = max(votes.count(k) for k in range(c))
        assert variation_ratio(x)[i].item() == pytest.approx(1 - mode_count / s_count, abs=1e-15)
        top = sorted(mean, reverse=True)
        assert margin(x)[i].item() == pytest.approx(1 - (top[0] - top[1]), abs=1e-13)
        stds = []
        for k in range(c):
            mu = mean[k]
            stds.append(math.sqrt(sum((r[k] - mu) ** 2 for r in rows) / s_count))
        assert mean_std(x)[i].item() == pytest.approx(sum(stds) / c, abs=1e-13)


def test_mcresult_input_with_and_without_samples(generator):
    x = _samples(generator)
    kept = MCResult.from_samples(x, keep_samples=True)
    summary = MCResult.from_samples(x)
    for fn in (bald, max_entropy, variation_ratio, margin, mean_std):
        assert torch.allclose(fn(kept), fn(x), atol=1e-13, rtol=0)
        assert torch.allclose(fn(summary), fn(x), atol=1e-13, rtol=0)


def test_random_and_top_k(generator):
    x = _samples(generator)
    a = random(x, generator=torch.Generator().manual_seed(3))
    b = random(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (9,) and bool(((a >= 0) & (a < 1)).all())
    assert top_k(torch.tensor([0.1, 0.5, 0.5, 0.2]), 2).tolist() == [1, 2]  # ties: lower index


def _naive_joint_mi(xs, idx):
    s_count, c = len(xs), len(xs[0][0])
    h = 0.0
    for ys in itertools.product(range(c), repeat=len(idx)):
        p = sum(math.prod(xs[s][i][y] for i, y in zip(idx, ys)) for s in range(s_count)) / s_count
        if p > 0:
            h -= p * math.log(p)
    cond = sum(sum(_h(xs[s][i]) for s in range(s_count)) / s_count for i in idx)
    return h - cond


def test_batch_bald_exact_matches_naive_greedy(generator):
    x = _samples(generator, s=5, n=8, c=3)
    xs = x.tolist()
    res = batch_bald(x, 3)
    chosen = []
    for step in range(3):
        best = max(
            (i for i in range(8) if i not in chosen),
            key=lambda i: _naive_joint_mi(xs, chosen + [i]),
        )
        chosen.append(best)
        assert res.scores[step].item() == pytest.approx(_naive_joint_mi(xs, chosen), abs=1e-12)
    assert res.indices.tolist() == chosen
    assert res.exact == [True, True, True] and res.std_errors.tolist() == [0.0, 0.0, 0.0]


def test_batch_bald_of_one_is_bald(generator):
    x = _samples(generator, n=20)
    res = batch_bald(x, 1)
    b = bald(x)
    assert res.indices.tolist() == [int(torch.argmax(b))]
    assert res.scores[0].item() == pytest.approx(b.max().item(), abs=1e-13)


def test_batch_bald_avoids_duplicates_that_bald_takes(generator):
    x = _samples(generator, s=8, n=6, c=3)
    top = int(torch.argmax(bald(x)))
    dup = torch.cat([x, x[:, top : top + 1]], 1)  # input 6 duplicates the best input
    assert set(top_k(bald(dup), 2).tolist()) == {top, 6}
    picked = batch_bald(dup, 2).indices.tolist()
    assert picked[0] in (top, 6) and picked[1] not in (top, 6)


def test_batch_bald_sampled_estimate_within_six_standard_errors(generator):
    x = _samples(generator, s=6, n=7, c=3, scale=1.5)
    exact = batch_bald(x, 4)
    # force sampling from the second point on; same greedy path is not guaranteed, so
    # check each sampled step's score against the exact joint MI of its own chosen set
    est = batch_bald(
        x, 4, max_exact_configs=3, joint_samples=20000, generator=torch.Generator().manual_seed(0)
    )
    assert est.exact == [True, False, False, False]
    xs = x.tolist()
    for step in range(1, 4):
        truth = _naive_joint_mi(xs, est.indices[: step + 1].tolist())
        err = est.std_errors[step].item()
        assert 0 < err < 0.05
        assert abs(est.scores[step].item() - truth) <= 6 * err
    assert exact.scores[0] == est.scores[0]


def test_acquisition_errors(generator):
    x = _samples(generator)
    with pytest.raises(ValueError, match=r"^batch_bald: expected k <= 9 candidates, but got 10\."):
        batch_bald(x, 10)
    with pytest.raises(
        ValueError,
        match=r"^batch_bald: expected an MCResult with samples, but got one with samples=None\. "
        r"Call mc_predict\(\.\.\., keep_samples=True\)\.",
    ):
        batch_bald(MCResult.from_samples(x), 2)
    with pytest.raises(
        ValueError, match=r"^bald: expected samples of shape \(S, N, C\), but got \(9, 3\)"
    ):
        bald(x[0])
    with pytest.raises(ValueError, match=r"^bald: expected rows of samples summing to 1"):
        bald(x * 2)
    with pytest.raises(ValueError, match=r"^variation_ratio: expected finite samples"):
        variation_ratio(x * float("nan"))

from __future__ import annotations

import pytest
import torch

from dropkit import metrics

from . import _reference as ref


def test_auroc_hand_computed():
    # OOD 0.35 beats 0.1 only; OOD 0.8 beats both: 3 of 4 pairs
    assert metrics.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    # ties count one half
    assert metrics.auroc([0.5, 0.5, 0.5], [False, True, True]) == 0.5
    assert metrics.auroc([1.0, 0.0], [True, False]) == 1.0


@pytest.mark.parametrize("trial", range(4))
def test_ood_metrics_match_naive_reference(generator, trial):
    n = 12 + 7 * trial
    # coarse integer scores so ties are common
    scores = torch.randint(0, 6, (n,), generator=generator).double() / 5
    is_ood = torch.zeros(n, dtype=torch.bool)
    is_ood[torch.randperm(n, generator=generator)[: n // 3]] = True
    s, o = scores.tolist(), is_ood.tolist()
    assert metrics.auroc(scores, is_ood) == pytest.approx(ref.auroc(s, o), abs=1e-12)
    assert metrics.aupr_out(scores, is_ood) == pytest.approx(ref.average_precision(s, o), abs=1e-12)
    assert metrics.aupr_in(scores, is_ood) == pytest.approx(
        ref.average_precision([-v for v in s], [not v for v in o]), abs=1e-12
    )
    for tpr in (0.5, 0.8, 0.95, 1.0):
        assert metrics.fpr_at_tpr(scores, is_ood, tpr) == pytest.approx(
            ref.fpr_at_tpr(s, o, tpr), abs=1e-12
        )


def test_fpr_at_tpr_hand_computed():
    scores = [float(i) for i in range(20)] + [float(i) + 0.5 for i in range(20)]
    is_ood = [False] * 20 + [True] * 20
    # OOD scores 0.5..19.5; 95% TPR = 19 of 20 caught: threshold 1.5 -> in-dist 2..19 flagged
    assert metrics.fpr_at_tpr(scores, is_ood) == pytest.approx(18 / 20)


def test_ood_scores_of_result(generator):
    from dropkit.uncertainty.result import MCResult

    s = torch.softmax(torch.randn(4, 6, 3, generator=generator, dtype=torch.float64), -1)
    out = metrics.ood_scores(MCResult.from_samples(s))
    assert set(out) == {
        "max_softmax",
        "predictive_entropy",
        "mutual_information",
        "variation_ratio",
    }
    assert torch.allclose(out["max_softmax"], 1 - s.mean(0).max(-1).values)


def test_single_class_and_bad_input_raise():
    with pytest.raises(
        ValueError,
        match=r"^auroc: expected both OOD and in-distribution inputs in is_ood, "
        r"but got only in-distribution \(3 inputs\)\. The metric is undefined",
    ):
        metrics.auroc([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(
        ValueError,
        match=r"^aupr_in: expected both OOD and in-distribution inputs in is_ood, "
        r"but got only OOD \(2 inputs\)",
    ):
        metrics.aupr_in([0.1, 0.2], [True, True])
    with pytest.raises(
        ValueError,
        match=r"^auroc: expected finite scores, but got '1 non-finite value\(s\) such as nan'",
    ):
        metrics.auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(
        ValueError,
        match=r"^auroc: expected is_ood of shape \(2,\) matching the scores, but got \(3,\)",
    ):
        metrics.auroc([0.1, 0.2], [0, 1, 1])
    with pytest.raises(
        ValueError,
        match=r"^aupr_out: expected is_ood to be booleans or 0/1 integers, but got \[0, 2\]",
    ):
        metrics.aupr_out([0.1, 0.2], [0, 2])
    with pytest.raises(
        ValueError,
        match=r"^fpr_at_tpr: expected tpr in \(0, 1\], but got 0\. Pass e.g\. tpr=0\.95\.",
    ):
        metrics.fpr_at_tpr([0.1, 0.2], [0, 1], tpr=0)
    with pytest.raises(
        ValueError, match=r"^auroc: expected scores of shape \(N,\), but got \(2, 1\)"
    ):
        metrics.auroc(torch.zeros(2, 1), [0, 1])

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dropkit.baselines import DeepEnsemble, softmax_predict

from .conftest import modes, train_mlp


def _naive_entropy(row):
    return -sum(p * math.log(p) for p in row if p > 0)


def test_softmax_predict_is_eval_softmax_and_restores_modes(toy):
    model = toy["model"]
    model.train()
    model[0].eval()  # a per-module flag that model.train() would overwrite
    before = modes(model)
    x = toy["test"][0]
    r = softmax_predict(model, x, batch_size=7, keep_samples=True)
    assert modes(model) == before
    with torch.no_grad():
        model.eval()
        expected = torch.softmax(model(x).double(), -1)
    # float32 model on chunks of 7 rows vs all 90: BLAS may sum the (K <= 16) dot
    # products in another order, a few ulp (eps 1.2e-7) of O(1) logits, and the
    # softmax's slope is at most 1/2: differences stay well below 1e-6
    assert torch.allclose(r.mean, expected, atol=1e-6, rtol=0)
    assert r.samples.shape == (1, 90, 3)
    assert torch.all(r.mutual_information == 0)
    assert r.extras == {"method": "softmax", "forward_passes": 1}


def test_ensemble_matches_naive_average(toy):
    x, y = toy["train"]
    ens = DeepEnsemble.from_train_fn(lambda s: train_mlp(x, y, s, steps=20), 3, seed=5)
    assert len(ens) == 3 and ens.num_parameters == 3 * sum(
        p.numel() for p in ens.members[0].parameters()
    )
    # members differ (different seeds)
    assert not torch.equal(ens.members[0][0].weight, ens.members[1][0].weight)
    xt = toy["test"][0][:10]
    r = ens.predict(xt, keep_samples=True)
    with torch.no_grad():
        per = []
        for m in ens.members:
            m.eval()
            per.append(torch.softmax(m(xt).double(), -1).tolist())
    for i in range(10):
        mean = [sum(per[k][i][c] for k in range(3)) / 3 for c in range(3)]
        assert r.mean[i].tolist() == pytest.approx(mean, abs=1e-12)
        ee = sum(_naive_entropy(per[k][i]) for k in range(3)) / 3
        assert r.mutual_information[i].item() == pytest.approx(_naive_entropy(mean) - ee, abs=1e-12)
    assert r.samples.shape == (3, 10, 3) and r.samples_used.tolist() == [3] * 10
    assert r.extras["forward_passes"] == 3


def test_ensemble_errors():
    with pytest.raises(
        ValueError, match=r"^DeepEnsemble: expected a non-empty sequence of models, but got \[\]"
    ):
        DeepEnsemble([])
    with pytest.raises(
        TypeError,
        match=r"^DeepEnsemble: expected members\[i\] to be a torch.nn.Module, but got 'str'",
    ):
        DeepEnsemble(["model"])
    with pytest.raises(
        ValueError, match=r"^DeepEnsemble.from_train_fn: expected members >= 1, but got 0"
    ):
        DeepEnsemble.from_train_fn(lambda s: nn.Linear(2, 2), 0)
    with pytest.raises(
        TypeError,
        match=r"^DeepEnsemble.predict: expected inputs to be a torch.Tensor \(N, ...\), but got "
        r"'list'",
    ):
        DeepEnsemble([nn.Linear(2, 2)]).predict([[1.0, 2.0]])
    with pytest.raises(
        ValueError,
        match=r"^softmax_predict: expected the model to return logits \(N, C\), but got shape "
        r"\(4,\)",
    ):
        softmax_predict(nn.Sequential(nn.Linear(2, 1), nn.Flatten(0)), torch.zeros(4, 2))


def test_modes_restored_after_a_failing_forward():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(5, 2))  # shape bug
    model.train()
    model[1].eval()
    before = modes(model)
    with pytest.raises(RuntimeError):
        softmax_predict(model, torch.zeros(2, 3))
    assert modes(model) == before

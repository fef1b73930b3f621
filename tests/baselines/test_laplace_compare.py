from __future__ import annotations

import pytest
import torch
from torch import nn

from dropkit import metrics
from dropkit.baselines import (
    DeepEnsemble,
    LastLayerLaplace,
    TemperatureScaling,
    compare_uncertainty,
    softmax_predict,
)
from dropkit.baselines._cost import PeakTensorMemory, measure

from .conftest import modes, train_mlp


def test_last_layer_laplace_probit_and_mc(toy):
    model = toy["model"]
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = modes(model)
    la = LastLayerLaplace(model).fit(*toy["train"])
    assert modes(model) == before
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert la.prior_precision > 0 and la.posterior_size == 16 * 3 + 3
    x = toy["test"][0]
    r = la.predict(x)
    assert r.mean.shape == (90, 3) and r.mean.dtype == torch.float64
    assert torch.allclose(r.mean.sum(-1), torch.ones(90, dtype=torch.float64), atol=1e-12)
    assert r.mutual_information is None and r.predictive_entropy is not None
    mc = la.predict(x, predictive="mc", samples=400, seed=3, keep_samples=True)
    assert mc.samples.shape == (400, 90, 3) and mc.mutual_information is not None
    # same seed, same draws
    again = la.predict(x, predictive="mc", samples=400, seed=3)
    assert torch.equal(again.mean, mc.mean)
    # the probit mean and the MC mean of the same Gaussian logits agree on the argmax
    # for confident inputs (probit is an approximation, so only a loose agreement)
    agree = (mc.mean.argmax(-1) == r.mean.argmax(-1)).double().mean().item()
    assert agree > 0.9
    # accuracy equals the MAP's on clearly classified inputs: same last-layer mean
    sm = softmax_predict(model, x)
    confident = sm.mean.max(-1).values > 0.99
    assert torch.equal(r.mean[confident].argmax(-1), sm.mean[confident].argmax(-1))


def test_laplace_errors(toy):
    la = LastLayerLaplace(toy["model"])
    with pytest.raises(
        RuntimeError,
        match=r"^LastLayerLaplace: expected a fitted posterior, but got an unfitted instance",
    ):
        la.predict(toy["test"][0])
    with pytest.raises(
        ValueError,
        match=r"^LastLayerLaplace: expected hessian_structure to be one of \['diag', 'full', "
        r"'kron'\], but got 'lowrank'",
    ):
        LastLayerLaplace(toy["model"], hessian_structure="lowrank")
    with pytest.raises(
        ValueError,
        match=r"^LastLayerLaplace.fit: expected val=\(inputs, labels\) with "
        r"prior_optimization='gridsearch', but got None",
    ):
        LastLayerLaplace(toy["model"], prior_optimization="gridsearch").fit(*toy["train"])
    la.fit(*toy["train"])
    with pytest.raises(
        ValueError,
        match=r"^LastLayerLaplace.predict: expected predictive to be one of \['mc', 'probit'\], "
        r"but got 'bridge'",
    ):
        la.predict(toy["test"][0], predictive="bridge")


def test_laplace_gridsearch_on_validation(toy):
    la = LastLayerLaplace(toy["model"], prior_optimization="gridsearch", hessian_structure="diag")
    la.fit(*toy["train"], val=toy["val"])
    assert 1e-4 <= la.prior_precision <= 1e4  # inside laplace-torch's grid


def test_peak_tensor_memory_counts_live_storages():
    with PeakTensorMemory() as tracker:
        a = torch.empty(1000, dtype=torch.float32)  # 4000 bytes
        b = torch.empty(500, dtype=torch.float64)  # 4000 bytes
        view = a[:10]  # no new storage
        del a
        c = torch.empty(250, dtype=torch.float32)  # a is still alive through the view
        del view
        d = torch.empty(10, dtype=torch.float32)  # now a's 4000 bytes are released
    assert tracker.peak_bytes == 4000 + 4000 + 1000
    assert tracker.current_bytes == 4000 + 1000 + 40
    del b, c, d
    result, wall, peak = measure(lambda: torch.ones(100, 100).sum(), memory=True)
    # the timed run's own result comes back (a sum of ones: exact), with its peak
    assert result.item() == 100 * 100 and wall >= 0 and peak == 100 * 100 * 4 + 4
    calls: list[int] = []
    assert measure(lambda: calls.append(1), memory=False, warmup=False)[2] is None
    assert calls == [1]  # no warm-up, no memory pass: one call


def test_compare_uncertainty_matches_direct_metrics(toy):
    model = toy["model"]
    x, y = toy["train"]
    ens = DeepEnsemble.from_train_fn(lambda s: train_mlp(x, y, s, steps=20), 2)
    model.train()
    before = modes(model)
    cmp = compare_uncertainty(
        model,
        toy["test"],
        ood=toy["ood"],
        shifted=toy["shifted"],
        val=toy["val"],
        train=toy["train"],
        ensemble=ens,
        samples=8,
        seed=1,
    )
    assert modes(model) == before
    names = [r.method for r in cmp.reports]
    assert names == ["softmax", "mc_dropout", "ensemble", "laplace"]
    xt, yt = toy["test"]
    sm = softmax_predict(model, xt)
    soft = cmp.reports[0]
    assert soft.accuracy == metrics.accuracy(sm, yt)
    assert soft.nll == pytest.approx(metrics.nll(sm, yt), abs=1e-12)
    assert soft.ece == pytest.approx(metrics.ece(sm, yt), abs=1e-12)
    assert soft.aurc == pytest.approx(metrics.aurc(sm, yt), abs=1e-12)
    assert set(soft.ood) == {
        "max_softmax",
        "predictive_entropy",
        "mutual_information",
        "variation_ratio",
    }
    out = softmax_predict(model, toy["ood"])
    flags = torch.cat([torch.zeros(90), torch.ones(40)]).bool()
    expected = metrics.auroc(torch.cat([sm.predictive_entropy, out.predictive_entropy]), flags)
    assert soft.ood["predictive_entropy"]["auroc"] == pytest.approx(expected, abs=1e-12)
    # temperature scaling, refitted side by side on the same validation predictive
    xv, yv = toy["val"]
    ts = TemperatureScaling().fit_probs(softmax_predict(model, xv), yv)
    assert soft.temperature == pytest.approx(ts.temperature, rel=1e-9)
    assert soft.calibrated["nll"] == pytest.approx(
        metrics.nll(ts.transform_probs(sm), yt), abs=1e-12
    )
    # the fitted temperature minimises the validation NLL: no worse than T = 1
    sv = softmax_predict(model, xv)
    assert metrics.nll(ts.transform_probs(sv), yv) <= metrics.nll(sv, yv) + 1e-12
    assert [r.forward_passes for r in cmp.reports] == [1, 8, 2, 1]
    n_params = sum(p.numel() for p in model.parameters())
    assert [r.parameters for r in cmp.reports] == [n_params, n_params, 2 * n_params, n_params + 51]
    assert all(r.peak_memory_mb is not None and r.peak_memory_mb > 0 for r in cmp.reports)
    # MC dropout row equals a direct mc_predict with the same seed
    from dropkit.uncertainty import mc_predict

    mc = mc_predict(model, xt, samples=8, seed=1, progress=False)
    assert cmp.reports[1].nll == pytest.approx(metrics.nll(mc, yt), abs=1e-9)
    d = cmp.to_dict()
    assert d["settings"]["samples"] == 8 and len(d["methods"]) == 4
    rows = cmp.rows()
    assert (
        rows[1]["ood.mutual_information.auroc"] == cmp.reports[1].ood["mutual_information"]["auroc"]
    )
    assert "laplace" in cmp.table()


def test_compare_uncertainty_errors(toy):
    model = toy["model"]
    with pytest.raises(
        ValueError,
        match=r"^compare_uncertainty: expected ensemble= with method 'ensemble', but got None",
    ):
        compare_uncertainty(model, toy["test"], methods=["ensemble"])
    with pytest.raises(
        ValueError,
        match=r"^compare_uncertainty: expected train=\(inputs, labels\) with method 'laplace', but "
        r"got None",
    ):
        compare_uncertainty(model, toy["test"], methods=["laplace"])
    with pytest.raises(
        ValueError,
        match=r"^compare_uncertainty: expected methods\[i\] to be one of \['ensemble', 'hmc', "
        r"'laplace', 'mc_dropout', 'softmax'\], but got 'mcd'",
    ):
        compare_uncertainty(model, toy["test"], methods=["mcd"])
    with pytest.raises(
        TypeError,
        match=r"^compare_uncertainty: expected test=\(inputs, labels\) as two tensors, but got "
        r"'Tensor'",
    ):
        compare_uncertainty(model, toy["test"][0])
    with pytest.raises(
        TypeError, match=r"^compare_uncertainty: expected model to be a torch.nn.Module"
    ):
        compare_uncertainty(nn, toy["test"])

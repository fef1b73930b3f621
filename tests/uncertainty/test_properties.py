"""Property: a seeded row's MC samples do not depend on how it is batched or sampled.

For random MLP / conv models, inputs, batch sizes, strategies and chunkings,
the samples of one row equal those of the same row predicted alone with its
key: exactly for masks (seen through identity-weight copies of the models, whose
samples are the input times the masks with no rounding), and within a float
tolerance stated from the dtype for the models with random weights.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import dropkit.nn as dnn
from dropkit import mc_predict

DROPS = {
    "mlp": [nn.Dropout, dnn.Dropout, nn.AlphaDropout, dnn.GaussianDropout],
    "conv": [nn.Dropout, nn.Dropout2d, dnn.Dropout2d, nn.FeatureAlphaDropout],
}


def build(arch: str, width: int, depth: int, drops: list[int], eye: bool, dtype) -> nn.Module:
    """``depth`` blocks (linear or 1x1 conv of ``width``, ReLU, a dropout kind)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        lin = nn.Linear(width, width) if arch == "mlp" else nn.Conv2d(width, width, 1)
        if eye:  # identity weights, zero bias: exact arithmetic on positive inputs
            with torch.no_grad():
                lin.weight.copy_(torch.eye(width).view_as(lin.weight))
                lin.bias.zero_()
        kind = DROPS[arch][drops[i % len(drops)]]
        # alpha dropout can make activations negative; keep the eye models exact
        relu = [] if eye else [nn.ReLU()]
        layers += [lin, *relu, kind(0.3)]
    return nn.Sequential(*layers).to(dtype)


@st.composite
def cases(draw):
    arch = draw(st.sampled_from(["mlp", "conv"]))
    return {
        "arch": arch,
        "width": draw(st.integers(2, 12)),
        "depth": draw(st.integers(1, 3)),
        "drops": draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)),
        "n": draw(st.integers(1, 9)),
        "hw": draw(st.integers(1, 3)),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "strategy": draw(st.sampled_from(["auto", "loop", "batched"])),
        "chunk": draw(st.one_of(st.none(), st.integers(1, 5))),
        "batch_size": draw(st.one_of(st.none(), st.integers(1, 9))),
        "samples": draw(st.integers(1, 6)),
        "seed": draw(st.integers(0, 2**40)),
        "data_seed": draw(st.integers(0, 2**31)),
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), data=st.data())
def test_a_seeded_rows_samples_do_not_depend_on_its_batch(case, data):
    c = case
    row = data.draw(st.integers(0, c["n"] - 1), label="row")
    shape = (c["n"], c["width"]) if c["arch"] == "mlp" else (c["n"], c["width"], c["hw"], c["hw"])
    g = torch.Generator().manual_seed(c["data_seed"])
    x = (torch.rand(shape, generator=g) + 0.5).to(c["dtype"])  # positive: exact eye models
    common = {"samples": c["samples"], "seed": c["seed"], "keep_samples": True}
    common["output"] = "regression"
    varied = {"strategy": c["strategy"], "chunk_samples": c["chunk"], "batch_size": c["batch_size"]}
    if c["strategy"] != "batched":
        varied.pop("chunk_samples")
    for eye in (True, False):
        torch.manual_seed(c["data_seed"])
        model = build(c["arch"], c["width"], c["depth"], c["drops"], eye, c["dtype"])
        ref = mc_predict(model, x, **common).samples[:, row]
        alone = mc_predict(model, x[row : row + 1], row_ids=[row], **common).samples[:, 0]
        batched = mc_predict(model, x, **common, **varied).samples[:, row]
        if eye:  # the samples are x times the masks: masks identical
            assert torch.equal(alone, ref) and torch.equal(batched, ref)
        else:
            # each of the depth layers sums `width` products in another order at another
            # batch shape: at most width * eps relative per layer, summed over layers
            tol = 4 * c["depth"] * c["width"] * torch.finfo(c["dtype"]).eps
            torch.testing.assert_close(alone, ref, rtol=tol, atol=tol)
            torch.testing.assert_close(batched, ref, rtol=tol, atol=tol)

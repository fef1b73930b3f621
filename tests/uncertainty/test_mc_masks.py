"""Per-sample seeded masks: right distribution, same masks in loop and batch, restored."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit.nn as dk
from dropkit.kernels import effective_p
from dropkit.sites import mc_mode
from dropkit.uncertainty import mc_predict, sample_seed
from dropkit.uncertainty.masks import MaskControl

SIGMAS = 6.0


def within(dropped: int, n: int, p: float) -> bool:
    return abs(dropped - n * p) <= SIGMAS * math.sqrt(n * p * (1 - p))


def test_sample_seeds_are_distinct_and_stable():
    seeds = {sample_seed(3, s) for s in range(1000)}
    assert len(seeds) == 1000 and sample_seed(3, 5) == sample_seed(3, 5)
    assert sample_seed(3, 5) != sample_seed(4, 5) and all(0 <= v < 2**63 for v in seeds)


def run(
    module: nn.Module, x: torch.Tensor, samples: list[int], consistent: bool = False, seed: int = 0
) -> torch.Tensor:
    with (
        mc_mode(module) as handle,
        MaskControl(handle.enabled, seed=seed, consistent=consistent) as ctl,
    ):
        ctl.use(samples)
        try:
            return module(x)
        finally:
            ctl.release()


@pytest.mark.parametrize(
    "cls", [nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout]
)
def test_torch_dropout_emulation_distribution(cls):
    p = 0.3
    x = (
        torch.full((64, 16, 8, 8), 2.0)
        if cls in (nn.Dropout2d, nn.FeatureAlphaDropout)
        else torch.full((64, 16, 40), 2.0)
    )
    m = cls(p)
    out = run(m, x, [0])
    if cls in (nn.AlphaDropout, nn.FeatureAlphaDropout):
        # the two values torch's own alpha dropout produces on a constant input
        ref = F.alpha_dropout(torch.full((100_000,), 2.0), p, training=True).unique()
        assert ref.numel() == 2
        torch.testing.assert_close(out.unique(), ref)
        dropped_value = float(ref.min())
        dropped = out == dropped_value
    else:
        values = out.unique()
        assert values.numel() == 2 and float(values[0]) == 0.0
        # element-wise masks quantise p to 2**-16, channel masks to 2**-32
        q = effective_p(p, precise=cls is not nn.Dropout)
        assert math.isclose(float(values[1]), 2.0 / (1 - q), rel_tol=1e-6)
        dropped = out == 0
    if cls in (nn.Dropout, nn.AlphaDropout):
        assert within(int(dropped.sum()), dropped.numel(), p)
    else:  # whole channels
        per_channel = dropped.flatten(2)
        assert (per_channel.all(-1) | (~per_channel).all(-1)).all()
        assert within(
            int(per_channel[..., 0].sum()), per_channel.shape[0] * per_channel.shape[1], p
        )
    assert "forward" not in m.__dict__


@pytest.mark.parametrize("cls", [nn.Dropout, nn.Dropout2d, nn.AlphaDropout])
def test_batched_blocks_equal_single_samples(cls):
    m = cls(0.4)
    x = torch.randn(3, 16, 5, 5)  # 16 channels: equal channel masks by chance ~1e-5
    batched = run(m, x.repeat(4, 1, 1, 1), [0, 1, 2, 3], seed=9)
    singles = torch.cat([run(m, x, [s], seed=9) for s in range(4)])
    # exact: dropout is element-wise, so every element goes through the same IEEE
    # operations (mask, scale) whatever the batch shape; no reduction is involved
    assert torch.equal(batched, singles)
    # one mask shared by every row: equal rows stay equal, and differ from the input
    same = x[:1].repeat(3, 1, 1, 1)
    consistent = run(m, same, [2], consistent=True, seed=9)
    assert torch.equal(consistent[0], consistent[2]) and not torch.equal(consistent[0], same[0])
    free = run(m, same, [2], seed=9)
    assert not torch.equal(free[0], free[2])


def test_dropkit_modules_use_their_generator_slot(seed):
    net = nn.Sequential(nn.Linear(6, 12), dk.Dropout(0.5), nn.Linear(12, 3)).double()
    gen_before = net[1].generator
    x = torch.randn(4, 6, dtype=torch.float64)
    a = mc_predict(
        net, x, samples=6, seed=seed, strategy="loop", reuse_prefix=False, keep_samples=True
    )
    b = mc_predict(net, x, samples=6, seed=seed, strategy="batched", keep_samples=True)
    # loop vs batched run the Linear layers on other batch shapes, which BLAS may sum
    # in another order: float64 outputs then differ by a few ulp at most
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-12, atol=1e-12)
    assert a.extras["seeded_sites"] == ["1"] and net[1].generator is gen_before
    seen: list[torch.Tensor] = []
    hook = net[1].register_forward_hook(lambda m, i, out: seen.append(out == 0))
    try:
        c = mc_predict(
            net,
            x[:1].repeat(3, 1),
            samples=4,
            seed=seed,
            consistent_masks=True,
            keep_samples=True,
            strategy="batched",  # no timing calls: every recorded call is a sample
        )
    finally:
        hook.remove()
    # one mask per sample for all three (identical) inputs: the dropped units match
    # exactly in every call; the outputs then differ by BLAS rounding of rows at most
    dropped = torch.cat([d.reshape(-1, 3, 12) for d in seen])  # (S, N, 12)
    assert dropped.shape[0] == 4 and bool(dropped.any()) and not bool(dropped.all())
    assert torch.equal(dropped[:, 0], dropped[:, 2])
    torch.testing.assert_close(c.samples[:, 0], c.samples[:, 2], rtol=1e-12, atol=1e-12)


def test_unbatched_site_input_is_reported():
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.drop(x.sum(0))[None].expand(x.shape[0], -1)  # mixes the batch

    with pytest.raises(RuntimeError, match=r"expected the input of dropout site 'drop' to stack 3"):
        mc_predict(Flat(), torch.randn(2, 5), samples=4, strategy="batched", chunk_samples=3)

"""Variant-specific behaviour of the plain (non-wrapping) dropout variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dn
from dropkit.kernels import effective_p
from dropkit.nn.alpha import ALPHA_PRIME, SELU_ALPHA, SELU_LAMBDA, alpha_coefficients

SIGMA = 6.0


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- Dropout: drop-in for torch.nn.Dropout ---------------------------------------------


def test_dropout_matches_torch_dropout_interface():
    ours, theirs = dn.Dropout(0.2, True), nn.Dropout(0.2, True)
    assert repr(ours) == repr(theirs) == "Dropout(p=0.2, inplace=True)"
    assert repr(dn.Dropout()) == repr(nn.Dropout()) == "Dropout(p=0.5, inplace=False)"
    assert ours.state_dict() == theirs.state_dict() == {}
    assert (ours.p, ours.inplace) == (theirs.p, theirs.inplace)


def test_checkpoints_move_between_torch_and_dropkit_dropout():
    def model(drop):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 4), drop, nn.Linear(4, 2))

    theirs, ours = model(nn.Dropout(0.1)), model(dn.Dropout(0.1))
    assert list(theirs.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(3, 4)
    assert torch.equal(ours.eval()(x), theirs.eval()(x))


def test_dropout_inplace_writes_into_input():
    x = torch.ones(1000)
    out = dn.Dropout(0.5, inplace=True, generator=gen(0))(x)
    assert out.data_ptr() == x.data_ptr()
    assert set(x.unique().tolist()) == {0.0, 2.0}


def test_dropout_p_one_returns_zeros():
    assert torch.equal(DF.dropout(torch.ones(5), 1.0), torch.zeros(5))


# --- spatial ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "shape"),
    [
        (dn.Dropout1d, (8, 32, 5)),
        (dn.Dropout1d, (32, 5)),
        (dn.Dropout2d, (8, 32, 4, 3)),
        (dn.Dropout3d, (8, 32, 2, 3, 2)),
        (dn.Dropout3d, (32, 2, 3, 2)),
    ],
)
def test_spatial_masks_are_constant_over_positions(cls, shape):
    x = torch.rand(shape) + 0.5
    ratio = cls(0.5, generator=gen(0))(x) / x
    spatial = cls.spatial
    per_channel = ratio.reshape(*shape[: len(shape) - spatial], -1)
    assert torch.equal(per_channel, per_channel[..., :1].expand_as(per_channel))
    assert (per_channel[..., 0] == 0).any() and (per_channel[..., 0] != 0).any()


def test_dropout2d_reads_3d_input_as_n_c_l_with_torchs_warning():
    # torch.nn.Dropout2d's historical reading: one draw per (N, C), constant over L
    x = torch.rand(16, 32, 7) + 0.5
    with pytest.warns(UserWarning, match=r"^dropout2d: Received a 3D input") as ours:
        ratio = dn.Dropout2d(0.5, generator=gen(0))(x) / x
    with pytest.warns(UserWarning) as theirs:
        nn.Dropout2d(0.5)(x)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert torch.equal(ratio, ratio[..., :1].expand_as(ratio))
    assert not torch.equal(ratio[0, :, 0], ratio[1, :, 0])  # per sample, not shared over N


# --- locked ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_mask_is_constant_over_time_and_varies_over_batch(batch_first):
    time_dim = 1 if batch_first else 0
    shape = (16, 7, 32) if batch_first else (7, 16, 32)
    x = torch.rand(shape) + 0.5
    ratio = dn.LockedDropout(0.5, batch_first=batch_first, generator=gen(0))(x) / x
    first = ratio.select(time_dim, 0).unsqueeze(time_dim)
    assert torch.equal(ratio, first.expand_as(ratio))
    per_sequence = first.squeeze(time_dim)  # (N, C)
    assert not torch.equal(per_sequence[0], per_sequence[1])  # one mask per sequence


def test_locked_repr():
    assert repr(dn.LockedDropout(0.3)) == "LockedDropout(p=0.3, batch_first=False)"


# --- alpha -----------------------------------------------------------------------------


def _alpha_var_of_square(p: float) -> float:
    # out = a*x + b (kept, x ~ N(0, 1)) or a*alpha' + b (dropped); Var(out^2) = E[out^4] - 1
    a, b = alpha_coefficients(p)
    kept = 3 * a**4 + 6 * a**2 * b**2 + b**4
    return (1 - p) * kept + p * (a * ALPHA_PRIME + b) ** 4 - 1.0


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("fn", [DF.alpha_dropout, DF.feature_alpha_dropout])
def test_alpha_dropout_keeps_mean_zero_variance_one(fn, p):
    n = 200_000
    x = torch.randn(n // 40, 40, 1, generator=gen(0), dtype=torch.float64)
    y = fn(x, p, generator=gen(1))
    assert abs(y.mean().item()) <= SIGMA / math.sqrt(n)
    second = (y**2).mean().item()
    assert abs(second - 1.0) <= SIGMA * math.sqrt(_alpha_var_of_square(p) / n)
    # and plain dropout would not: its variance is 1 / (1 - p)
    assert abs((DF.dropout(x, p, generator=gen(1)) ** 2).mean().item() - 1 / (1 - p)) < 0.05


def test_alpha_constants_are_the_selu_fixed_point():
    assert ALPHA_PRIME == pytest.approx(-1.7580993408473766)
    x = torch.tensor([-50.0], dtype=torch.float64)
    assert torch.selu(x).item() == pytest.approx(-SELU_LAMBDA * SELU_ALPHA)


def test_feature_alpha_drops_whole_channels():
    x = torch.rand(16, 32, 5) + 1.0
    y = DF.feature_alpha_dropout(x, 0.5, generator=gen(0))
    dropped = y < 0
    assert torch.equal(dropped, dropped[..., :1].expand_as(dropped))


# --- gaussian --------------------------------------------------------------------------


def test_gaussian_noise_is_normal_with_the_dropout_variance():
    p, n = 0.3, 100_000
    noise = DF.gaussian_dropout(torch.ones(n, dtype=torch.float64), p, generator=gen(0))
    sd = math.sqrt(p / (1 - p))
    z = (noise - 1) / sd
    assert abs(z.mean().item()) <= SIGMA / math.sqrt(n)
    # fraction within one sd of a normal: 0.6827
    inside = (z.abs() < 1).double().mean().item()
    assert abs(inside - 0.682689) <= SIGMA * math.sqrt(0.682689 * 0.317311 / n)


# --- attention -------------------------------------------------------------------------


def _qkv():
    g = gen(0)
    return [torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(3)]


def test_attention_dropout_equals_hand_written_reference_with_the_same_mask():
    q, k, v = _qkv()
    p = 0.3
    probs = (q @ k.transpose(-2, -1) / math.sqrt(4)).softmax(-1)
    out = DF.attention_dropout(probs, p, generator=gen(5)) @ v
    # same seed, same shape: the same mask, read off by dropping a tensor of ones
    mask = DF.attention_dropout(torch.ones_like(probs), p, generator=gen(5))
    values = mask.unique()
    assert len(values) == 2 and values[0] == 0
    assert values[1].item() == pytest.approx(1 / (1 - effective_p(p)), rel=1e-12)
    ref = torch.zeros_like(out)
    for n in range(2):
        for h in range(3):
            for i in range(5):
                scores = [float(q[n, h, i] @ k[n, h, j]) / 2.0 for j in range(5)]
                top = max(scores)
                w = [math.exp(s - top) for s in scores]
                total = sum(w)
                for j in range(5):
                    ref[n, h, i] += (w[j] / total) * mask[n, h, i, j] * v[n, h, j]
    torch.testing.assert_close(out, ref)


def test_attention_dropout_matches_sdpa_without_dropout_and_in_expectation():
    q, k, v = _qkv()
    probs = (q @ k.transpose(-2, -1) / 2.0).softmax(-1)
    exact = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(DF.attention_dropout(probs, 0.0) @ v, exact)
    torch.testing.assert_close(dn.AttentionDropout(0.4).eval()(probs) @ v, exact)
    g = gen(1)
    draws = torch.stack([DF.attention_dropout(probs, 0.4, generator=g) @ v for _ in range(2000)])
    err = (draws.mean(0) - exact).abs()
    assert (err <= SIGMA * draws.std(0) / math.sqrt(2000)).all()


# --- drop path -------------------------------------------------------------------------


@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_drop_path_drops_whole_samples(scale_by_keep):
    x = torch.rand(256, 4, 3) + 0.5
    ratio = dn.DropPath(0.5, scale_by_keep=scale_by_keep, generator=gen(0))(x) / x
    assert torch.equal(ratio, ratio[:, :1, :1].expand_as(ratio))
    kept_value = 2.0 if scale_by_keep else 1.0
    assert set(ratio[:, 0, 0].unique().tolist()) == {0.0, kept_value}


def test_drop_path_rates_ramp_linearly():
    rates = DF.drop_path_rates(0.2, 12)
    reference = torch.linspace(0, 0.2, 12, dtype=torch.float64).tolist()
    assert rates == pytest.approx(reference, abs=1e-15)
    assert DF.drop_path_rates(0.3, 1) == [0.0]
    assert DF.drop_path_rates(0.3, 2) == [0.0, 0.3]


# --- drop block ------------------------------------------------------------------------


def _naive_drop_probs(h: int, w: int, bs: int, gamma: float) -> torch.Tensor:
    probs = torch.zeros(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            n = sum(
                1
                for r in range(h - bs + 1)
                for c in range(w - bs + 1)
                if r <= i < r + bs and c <= j < c + bs
            )
            probs[i, j] = 1 - (1 - gamma) ** n
    return probs


@pytest.mark.parametrize(("h", "w", "bs", "p"), [(7, 7, 3, 0.1), (6, 9, 2, 0.4), (5, 5, 5, 0.3)])
def test_block_gamma_gives_exact_expected_drop_fraction(h, w, bs, p):
    gamma, probs = DF.block_gamma(h, w, bs, p)
    torch.testing.assert_close(probs, _naive_drop_probs(h, w, bs, gamma))
    assert probs.mean().item() == pytest.approx(p, abs=1e-12)
    # the paper's overlap-free formula undershoots: it needs a larger gamma here
    paper = p / bs**2 * (h * w) / ((h - bs + 1) * (w - bs + 1))
    assert gamma >= paper - 1e-12 if bs == min(h, w) else gamma > paper


def test_block_dropped_regions_are_unions_of_whole_blocks():
    bs = 3
    x = torch.ones(32, 4, 10, 10)
    dropped = (DF.drop_block2d(x, 0.2, bs, generator=gen(0)) == 0).float()
    # morphological opening with a bs x bs square leaves a union of squares unchanged
    eroded = -F.max_pool2d(-dropped, bs, stride=1)
    opened = F.max_pool2d(F.pad(eroded, (bs - 1,) * 4), bs, stride=1)
    assert torch.equal(opened, dropped)
    assert dropped.any()


def test_block_position_normalisation_is_unbiased_at_every_position():
    p, bs, h = 0.3, 3, 7
    x = torch.ones(4000, 4, h, h, dtype=torch.float64)
    y = DF.drop_block2d(x, p, bs, generator=gen(0))
    _, probs = DF.block_gamma(h, h, bs, p)
    n = y.shape[0] * y.shape[1]
    mean = y.mean((0, 1))
    bound = SIGMA * (probs / (1 - probs) / n).sqrt()
    assert ((mean - 1).abs() <= bound).all()
    assert probs[0, 0] < probs[3, 3]  # corners are covered by fewer blocks


def test_block_batch_normalisation_keeps_the_mean_exactly():
    y = DF.drop_block2d(torch.ones(8, 4, 9, 9), 0.3, 3, normalize="batch", generator=gen(0))
    assert y.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert (y == 0).any()
    assert dn.DropBlock2d(0.1, 3, normalize=dn.BlockNorm.BATCH).normalize == "batch"


def test_block_p_one_drops_everything():
    assert torch.equal(DF.drop_block2d(torch.ones(1, 1, 4, 4), 1.0, 2), torch.zeros(1, 1, 4, 4))

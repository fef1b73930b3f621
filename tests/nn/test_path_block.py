"""DropPath and DropBlock2d: the behaviour timm's layer tests check, compile, and bad input.

timm's ``tests/test_layers_drop.py`` checks shapes over odd, even and asymmetric
maps, identity at ``p = 0`` and in eval, in-place aliasing, the drop ratio, and
DropPath's per-sample scaling; the cases below check the same properties where
dropkit offers the same option (written here, not copied).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import dropkit.functional as DF
import dropkit.nn as dn
from dropkit.kernels import effective_p
from dropkit.nn.alpha import alpha_coefficients
from dropkit.nn.drop_block import block_gamma


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- DropBlock2d ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "bs"),
    [(7, 7, 3), (4, 8, 3), (10, 5, 3), (3, 3, 3), (8, 16, 5), (16, 8, 5), (7, 14, 5)]
    + [(14, 7, 5), (16, 16, 2), (16, 16, 4), (16, 16, 6)],
)
def test_block_output_shape_over_odd_even_and_asymmetric_maps(h, w, bs):
    x = torch.rand(2, 3, h, w) + 0.5
    y = dn.DropBlock2d(0.3, bs, generator=gen(0))(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all() and (y >= 0).all()


def test_block_identity_at_p_zero_and_in_eval_and_drops_in_training():
    x = torch.ones(2, 3, 8, 8)
    assert dn.DropBlock2d(0.0, 3)(x) is x
    block = dn.DropBlock2d(0.5, 3, generator=gen(1))
    assert block.eval()(x) is x
    assert (block.train()(x) == 0).any()


def test_block_inplace_returns_the_input_object():
    x = torch.ones(2, 3, 8, 8)
    y = dn.DropBlock2d(0.3, 3, inplace=True, generator=gen(2))(x)
    assert y is x and (x == 0).any()


def test_block_drop_fraction_is_p_within_six_standard_errors():
    # per-map dropped fractions are independent across the N*C maps; their
    # sample mean is within 6 standard errors of p (CLT over 2048 maps)
    p = 0.1
    y = dn.DropBlock2d(p, 7, generator=gen(3))(torch.ones(32, 64, 28, 28))
    per_map = (y == 0).double().mean((-2, -1)).flatten()
    stderr = per_map.std() / math.sqrt(per_map.numel())
    assert abs(per_map.mean().item() - p) < 6 * stderr.item()


def test_block_channels_draw_independent_masks():
    y = dn.DropBlock2d(0.3, 5, generator=gen(4))(torch.ones(2, 4, 16, 16))
    assert not torch.equal(y[0, 0] == 0, y[0, 1] == 0)


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99, 0.999, 0.9999, 1 - 1e-12, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_output_is_finite_for_every_p(p, dtype):
    # p = 0.999 gave NaN: positions whose drop probability rounds to 1 were
    # scaled by 1 / 0 and multiplied by a zero keep
    y = dn.DropBlock2d(p, 3, generator=gen(5))(torch.ones(8, 4, 9, 9, dtype=dtype))
    assert torch.isfinite(y).all()


def test_block_compiles_with_fullgraph_and_keeps_its_rate():
    torch._dynamo.reset()
    block = dn.DropBlock2d(0.2, 3)
    compiled = torch.compile(block, fullgraph=True)
    x = torch.ones(16, 8, 12, 12)
    y = compiled(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    # the baked-in gamma is the eager one: E[dropped] = p, 6 binomial-ish sigmas
    # over the maps (per-map fractions are independent)
    per_map = (y == 0).double().mean((-2, -1)).flatten()
    stderr = per_map.std() / math.sqrt(per_map.numel())
    assert abs(per_map.mean().item() - 0.2) < 6 * stderr.item()
    assert torch.equal(compiled.eval()(x), x)


BLOCK_GAMMA_ERRORS = [
    ((0, 5, 1, 0.1), "block_gamma: expected height >= 1, but got 0. Pass an int >= 1."),
    ((5, 0, 1, 0.1), "block_gamma: expected width >= 1, but got 0. Pass an int >= 1."),
    ((5, 5, 0, 0.1), "block_gamma: expected block_size >= 1, but got 0. Pass an int >= 1."),
    (
        (5, 4, 5, 0.1),
        "block_gamma: expected block_size <= min(H, W) = 4 for a 5x4 map, but got 5. "
        "Use block_size <= 4, or apply it to a larger (earlier) feature map.",
    ),
    (
        (5, 5, 1, float("nan")),
        "block_gamma: expected p in [0, 1], but got nan. Use a probability such as 0.1.",
    ),
]


@pytest.mark.parametrize(("args", "message"), BLOCK_GAMMA_ERRORS)
def test_block_gamma_rejects_empty_maps_and_blocks(args, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        block_gamma(*args)


# --- DropPath ---------------------------------------------------------------------------


def test_path_identity_at_p_zero_and_in_eval():
    x = torch.rand(4, 8, 16, 16)
    assert DF.drop_path(x, 0.0, training=True) is x
    assert DF.drop_path(x, 0.5, training=False) is x
    module = dn.DropPath(0.5, generator=gen(6))
    assert module.eval()(x) is x
    assert (module.train()(torch.ones(32, 8, 4, 4)) == 0).any()


def test_path_kept_samples_are_scaled_by_exactly_one_over_keep():
    p = 0.2
    y = DF.drop_path(torch.ones(100, 8, 4, 4), p, generator=gen(7))
    kept = y[:, 0, 0, 0] != 0
    assert kept.any() and (~kept).any()
    scale = torch.tensor(1.0 / (1.0 - effective_p(p, precise=True)), dtype=torch.float32)
    assert torch.equal(y[kept], scale.expand_as(y[kept]))
    unscaled = DF.drop_path(torch.ones(100, 8, 4, 4), p, scale_by_keep=False, generator=gen(7))
    assert torch.equal(unscaled[kept], torch.ones_like(unscaled[kept]))
    assert torch.equal(unscaled == 0, y == 0)  # same draws, only the scale differs


def test_path_repr_shows_the_rate():
    assert "0.123" in dn.DropPath(0.123).extra_repr()


@pytest.mark.parametrize("training", [True, False])
def test_path_rejects_a_0d_input(training):
    message = (
        "DropPath: expected an input with a batch dim (N, *), but got (). "
        "Pass the batched branch output; for a single sample use x[None]."
    )
    module = dn.DropPath(0.3).train(training)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        module(torch.tensor(1.0))
    with pytest.raises(ValueError, match=re.escape(message.replace("DropPath", "drop_path"))):
        DF.drop_path(torch.tensor(1.0), 0.3, training=training)
    assert module.p == 0.3 and module.training is training


# --- alpha coefficients ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "exc", "what"),
    [
        (float("nan"), ValueError, "p in [0, 1), but got nan"),
        (1.0, ValueError, "p in [0, 1), but got 1.0"),
        (-0.1, ValueError, "p in [0, 1), but got -0.1"),
        ("0.1", TypeError, "p to be a float, but got '0.1'"),
    ],
)
def test_alpha_coefficients_reject_rates_without_a_finite_correction(p, exc, what):
    with pytest.raises(exc, match="^" + re.escape(f"alpha_coefficients: expected {what}.")):
        alpha_coefficients(p)

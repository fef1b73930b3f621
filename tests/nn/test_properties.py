"""Hypothesis property tests over shapes and rates for the plain (non-wrapping) variants."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit._registry import create_dropout
from dropkit.kernels import effective_p
from dropkit.nn.alpha import ALPHA_PRIME, alpha_coefficients


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _shape(rank: int, low: int = 1):
    return st.lists(st.integers(low, 5), min_size=rank, max_size=rank).map(tuple)


_RANKS = {
    "dropout": (1, 4),
    "dropout1d": (2, 3),
    "dropout2d": (4, 4),  # 3-D input warns (read as (N, C, L), as torch.nn.Dropout2d)
    "dropout3d": (4, 5),
    "alpha": (1, 4),
    "feature_alpha": (2, 4),
    "gaussian": (1, 4),
    "locked": (3, 3),
    "attention": (2, 4),
    "path": (1, 4),
    "block": (4, 4),
}


@pytest.mark.parametrize("name", sorted(_RANKS))
@settings(max_examples=15, deadline=None)
@given(data=st.data(), p=st.floats(0.0, 0.9))
def test_property_shapes_and_values(name, data, p):
    lo, hi = _RANKS[name]
    rank = data.draw(st.integers(lo, hi))
    shape = data.draw(_shape(rank, low=2 if name == "block" else 1))
    kwargs = {"block_size": data.draw(st.integers(1, min(shape[-2:])))} if name == "block" else {}
    module = create_dropout(name, p=p, generator=gen(0), **kwargs)
    x = torch.rand(shape, generator=gen(1)) + 0.5
    out = module(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(module.eval()(x), x)
    ratio = out / x
    if name in ("dropout", "dropout1d", "dropout2d", "dropout3d", "locked", "attention", "path"):
        # element-wise masks quantise p to 2**-16, structured (broadcast) ones to 2**-32
        q = effective_p(p, precise=name not in ("dropout", "attention"))
        values = torch.tensor([0.0, 1.0 / (1.0 - q)])
        assert torch.isclose(ratio[..., None], values).any(-1).all()
    if name == "alpha":
        a, b = alpha_coefficients(p)
        dropped = torch.tensor(a * ALPHA_PRIME + b)
        assert (torch.isclose(out, a * x + b) | torch.isclose(out, dropped)).all()
    if name == "block":
        assert (out >= 0).all() and torch.isfinite(out).all()

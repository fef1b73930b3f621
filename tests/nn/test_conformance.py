"""Conformance: dropkit's drop-in layers run side by side with the torch.nn layers they replace.

Every case runs the same call on ``torch.nn.X`` and ``dropkit.nn.X`` and compares
everything that is deterministic: the outcome (result or exception type), the
warnings, shape, dtype, device, strides, whether the result is the input object,
identity at ``p = 0`` / in eval, zeros at ``p = 1``, and the exact kept values
(``x`` times the layer's scale, rounded as the layer computes it). Masks are
random (dropkit has its own stream and quantises ``p`` to ``2**-16``, structured
masks to ``2**-32``), so drop rates are compared with 6-sigma binomial bounds.
Sizes sit below :data:`dropkit.kernels.SMALL` (PyTorch's sampler) and above
:data:`dropkit.kernels.SMALL_NO_NUMBA` (the kernel, with or without numba).
The README's "Differences from torch.nn" table lists what is deliberately
different; those cases are pinned at the end.
"""

from __future__ import annotations

import copy
import math
import pickle
import re
import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

import dropkit.nn as dn
from dropkit.kernels import SMALL, SMALL_NO_NUMBA, effective_p
from dropkit.nn._base import DropoutShapeError

PAIRS = {
    "Dropout": (dn.Dropout, nn.Dropout),
    "Dropout1d": (dn.Dropout1d, nn.Dropout1d),
    "Dropout2d": (dn.Dropout2d, nn.Dropout2d),
    "Dropout3d": (dn.Dropout3d, nn.Dropout3d),
    "AlphaDropout": (dn.AlphaDropout, nn.AlphaDropout),
    "FeatureAlphaDropout": (dn.FeatureAlphaDropout, nn.FeatureAlphaDropout),
}
NAMES = list(PAIRS)
FEATURE = {"Dropout1d", "Dropout2d", "Dropout3d", "FeatureAlphaDropout"}
ALPHA = {"AlphaDropout", "FeatureAlphaDropout"}
#: Logical input shapes: "small" draws fewer than SMALL keep decisions, "large"
#: more than SMALL_NO_NUMBA (channel layers draw one per (N, C)).
SHAPES = {
    "Dropout": {"small": (2, 3, 10, 10), "large": (4, 9, 32, 32)},
    "AlphaDropout": {"small": (2, 3, 10, 10), "large": (4, 9, 32, 32)},
    "Dropout1d": {"small": (4, 5, 30), "large": (130, 260, 2)},
    "Dropout2d": {"small": (2, 3, 10, 10), "large": (130, 260, 1, 2)},
    "Dropout3d": {"small": (2, 3, 4, 5, 5), "large": (130, 260, 1, 2, 1)},
    "FeatureAlphaDropout": {"small": (2, 3, 10, 10), "large": (130, 260, 2, 1)},
}
UNBATCHED = {"Dropout1d": (5, 30), "Dropout3d": (3, 4, 5, 5)}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "channels_last", "permuted", "sliced"]
TINY = 1e-7  # quantises to 0 in dropkit's element-wise kernel (below 2**-17)
P_GRID = [0.0, TINY, 0.3, 1.0]
SIGMA = 6.0
ALPHA_PRIME = -1.7580993408473766  # torch's -scale * alpha of SELU


def draws(name: str, shape: tuple[int, ...]) -> int:
    return shape[0] * shape[1] if name in FEATURE else math.prod(shape)


def make(shape: tuple[int, ...], layout: str, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Positive inputs (a kept value is never 0) of a logical ``shape`` in ``layout``."""
    g = torch.Generator().manual_seed(seed)
    if layout == "contiguous":
        return (torch.rand(shape, generator=g) + 0.5).to(dtype)
    if layout == "channels_last":  # the channel dim innermost in memory, any rank
        moved = (shape[0], *shape[2:], shape[1])
        return (torch.rand(moved, generator=g) + 0.5).to(dtype).movedim(-1, 1)
    if layout == "permuted":  # dense, every stride reversed (like .t())
        return (
            (torch.rand(shape[::-1], generator=g) + 0.5)
            .to(dtype)
            .permute(*reversed(range(len(shape))))
        )
    wide = (*shape[:-1], 2 * shape[-1])  # sliced: not dense
    return (torch.rand(wide, generator=g) + 0.5).to(dtype)[..., ::2]


def run(module: nn.Module, x: Any) -> tuple[Any, list[tuple[type, str]]]:
    """The module's result (or the exception it raised) and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out: Any = module(x)
        except Exception as exc:  # compared by type with torch's
            out = exc
    return out, [(w.category, str(w.message)) for w in caught]


def assert_same_outcome(ours: tuple, theirs: tuple) -> None:
    (y, ours_warn), (t, theirs_warn) = ours, theirs
    assert ours_warn == theirs_warn
    if isinstance(t, Exception):
        assert isinstance(y, type(t)), (y, t)
    else:
        assert not isinstance(y, Exception), y


def one(dtype: torch.dtype) -> torch.Tensor:
    return torch.ones((), dtype=dtype)


def scales(dtype: torch.dtype, q: float, ours: bool) -> list[torch.Tensor]:
    """The ways a layer may round ``1 / (1 - q)`` in ``dtype``.

    torch divides a tensor of ones of the dtype by ``1 - q`` (one rounding of
    ``1 / dtype(1 - q)``); dropkit's kernel rounds the float64 scale once to the
    compute dtype (float32 for half precision) and half inputs once more.
    """
    out = [one(dtype) / (1.0 - q)]
    if ours:
        exact = torch.tensor(1.0 / (1.0 - q), dtype=torch.float64)
        out += [exact.to(dtype), exact.to(torch.float32).to(dtype), exact.to(torch.float32)]
    return out


def binomial_ok(fraction: float, q: float, n: int) -> bool:
    return abs(fraction - q) <= SIGMA * math.sqrt(q * (1.0 - q) / n) + 1e-12


def check_dropped(name: str, x: torch.Tensor, y: torch.Tensor, p: float, ours: bool) -> None:
    """Values and drop rate of one training output at ``0 < p < 1``."""
    feature = name in FEATURE
    q = effective_p(p, precise=feature or name in ALPHA) if ours else p
    if name in ALPHA:
        # y = a x + b where kept, a alpha' + b where dropped; 4 roundings of at
        # most one eps each (coefficients, product, sum) bound the error
        a = 1.0 / math.sqrt((ALPHA_PRIME**2 * p + 1.0) * (1.0 - p))
        b = -a * ALPHA_PRIME * p
        x64, y64 = x.double(), y.double()
        eps = torch.finfo(x.dtype).eps
        dropped_value = a * ALPHA_PRIME + b
        dropped = (y64 - dropped_value).abs() <= 4 * eps * (abs(a * ALPHA_PRIME) + abs(b))
        kept_err = (y64 - (a * x64 + b)).abs()
        assert (dropped | (kept_err <= 4 * eps * (a * x64.abs() + abs(b)))).all()
    else:
        dropped = y == 0
        kept = ~dropped
        xk, yk = x[kept], y[kept]
        # every kept value is x * s for one rounding s of the scale, exactly
        cands = [lambda s=s: (xk * s).to(x.dtype) for s in scales(x.dtype, q, ours)]
        if ours and x.dtype in (torch.float16, torch.bfloat16):
            s32 = torch.tensor(1.0 / (1.0 - q), dtype=torch.float64).float()
            cands.append(lambda: (xk.float() * s32).to(x.dtype))
        assert any(torch.equal(yk, c()) for c in cands)
    if feature:  # whole channels: the drop decision is constant over positions
        flat = dropped.flatten(2)
        assert torch.equal(flat.all(-1), flat.any(-1))
        units = flat[..., 0]
    else:
        units = dropped
    assert binomial_ok(units.double().mean().item(), q, units.numel())


# --- forward in training over sizes x dtypes x layouts x p ----------------------------


def test_sizes_straddle_the_kernel_threshold():
    for name in NAMES:
        assert draws(name, SHAPES[name]["small"]) < SMALL
        assert draws(name, SHAPES[name]["large"]) > SMALL_NO_NUMBA


#: Every dtype x layout x p below the threshold; above it (where each case
#: costs more) every dtype on the contiguous and channels_last layouts and
#: float32 on the others: the kernel's paths are per dtype and per layout.
FORWARD_CASES = [
    ("small", dtype, layout, p) for dtype in DTYPES for layout in LAYOUTS for p in P_GRID
] + [
    ("large", dtype, layout, p)
    for dtype in DTYPES
    for layout in LAYOUTS
    for p in P_GRID
    if layout in ("contiguous", "channels_last") or dtype == torch.float32
]


@pytest.mark.parametrize(("size", "dtype", "layout", "p"), FORWARD_CASES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_training_forward_matches_torch(name, size, dtype, layout, p):
    ours_cls, torch_cls = PAIRS[name]
    x = make(SHAPES[name][size], layout, dtype)
    before = x.clone()
    torch.manual_seed(1)
    theirs = run(torch_cls(p), x)
    torch.manual_seed(1)
    ours = run(ours_cls(p), x)
    assert_same_outcome(ours, theirs)
    (y, _), (t, _) = ours, theirs
    assert torch.equal(x, before)  # out of place: the input is untouched
    assert (y is x) == (t is x)
    assert (y.shape, y.dtype, y.device) == (t.shape, t.dtype, t.device)
    assert y.stride() == t.stride()
    if p == 0.0:
        assert torch.equal(y, x) and torch.equal(t, x)
    elif p == 1.0:
        assert not y.any() and not t.any()
    else:
        check_dropped(name, x, t, p, ours=False)
        check_dropped(name, x, y, p, ours=True)


# --- eval / p = 0 identity and aliasing, special inputs --------------------------------


def special_inputs(name: str) -> dict[str, torch.Tensor]:
    small = SHAPES[name]["small"]
    cases = {
        "batched": make(small, "contiguous", torch.float32),
        "empty": torch.ones((0, *small[1:])),
        "empty_channels": torch.ones((small[0], 0, *small[2:])),
    }
    if name in UNBATCHED:
        cases["unbatched"] = make(UNBATCHED[name], "contiguous", torch.float32)
        cases["unbatched_empty"] = torch.ones((0, *UNBATCHED[name][1:]))
    if name in ("Dropout", "AlphaDropout"):
        cases.update(
            {
                "0-d": torch.tensor(1.5),
                "1-d": torch.rand(7) + 0.5,
                "1-d large": torch.rand(SMALL_NO_NUMBA + 5) + 0.5,
                "empty 1-d": torch.ones(0),
                "6-d": torch.rand(1, 2, 3, 2, 2, 3) + 0.5,
            }
        )
    if name == "Dropout2d":
        cases["(N, C, L)"] = make((4, 6, 9), "contiguous", torch.float32)
    if name == "FeatureAlphaDropout":
        cases.update({"1-d": torch.rand(7) + 0.5, "0-d": torch.tensor(1.5)})
    if name == "Dropout1d":
        cases.update({"1-d": torch.rand(7) + 0.5, "4-d": torch.rand(2, 3, 4, 5)})
    return cases


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("mode", ["eval", "p=0", "p=0.3", "p=1", "tiny"])
@pytest.mark.parametrize("name", NAMES)
def test_special_inputs_match_torch(name, mode, inplace):
    ours_cls, torch_cls = PAIRS[name]
    p = {"eval": 0.3, "p=0": 0.0, "p=0.3": 0.3, "p=1": 1.0, "tiny": TINY}[mode]
    for case, base in special_inputs(name).items():
        outcomes = []
        for cls in (torch_cls, ours_cls):
            x = base.clone()
            module = cls(p, inplace)
            module.train(mode != "eval")
            torch.manual_seed(2)
            out, warned = run(module, x)
            alias = None if isinstance(out, Exception) else out is x
            outcomes.append((out, warned, alias, x))
        (t, t_warn, t_alias, tx), (y, y_warn, y_alias, yx) = outcomes
        assert_same_outcome((y, y_warn), (t, t_warn))
        if isinstance(t, Exception):
            continue
        assert y_alias == t_alias, case
        assert (y.shape, y.dtype, y.stride()) == (t.shape, t.dtype, t.stride()), case
        if mode in ("eval", "p=0"):
            assert torch.equal(y, base) and torch.equal(t, base), case
        if mode == "p=1":
            assert not y.any() and not t.any(), case
        for out, x in ((y, yx), (t, tx)):
            # aliasing matched above; a result that is not the input leaves it
            # untouched (torch's alpha layers ignore inplace)
            assert out is x or torch.equal(x, base), case


def test_tiny_p_returns_a_new_tensor_that_does_not_alias_the_input():
    # TINY quantises to 0: torch still returns a new tensor, so editing the
    # output must never write into the input
    for size in ("small", "large"):
        x = make(SHAPES["Dropout"][size], "channels_last", torch.float32)
        y = dn.Dropout(TINY)(x)
        assert y is not x and y.data_ptr() != x.data_ptr() and torch.equal(y, x)
        assert y.stride() == x.stride()
        y.zero_()
        assert x.all()


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("name", NAMES)
def test_non_float_inputs_fail_or_pass_as_in_torch(name, size, dtype):
    # training at 0 < p < 1 raises (RuntimeError, complex: NotImplementedError);
    # eval, p = 0 and p = 1 accept them, at every size
    ours_cls, torch_cls = PAIRS[name]
    base = torch.ones(SHAPES[name][size]).to(dtype)
    for p, train in ((0.3, True), (TINY, True), (0.3, False), (0.0, True), (1.0, True)):
        theirs = run(torch_cls(p).train(train), base)
        ours = run(ours_cls(p).train(train), base)
        assert_same_outcome(ours, theirs)
        if not isinstance(theirs[0], Exception):
            y, t = ours[0], theirs[0]
            assert (y is base) == (t is base) and y.dtype == t.dtype and torch.equal(y, t)


# --- in place ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", P_GRID)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("name", NAMES)
def test_inplace_returns_the_input_with_its_layout(name, size, layout, p):
    ours_cls, torch_cls = PAIRS[name]
    results = []
    for cls in (torch_cls, ours_cls):
        x = make(SHAPES[name][size], layout, torch.float32)
        before, strides = x.clone(), x.stride()
        y = cls(p, inplace=True)(x)
        # torch's alpha layers ignore inplace (a new tensor, x untouched)
        written = torch.equal(x, y) and y.data_ptr() == x.data_ptr()
        results.append((y, y is x, written or torch.equal(x, before), x.stride() == strides))
    (t, *t_facts), (y, *y_facts) = results
    assert y_facts == t_facts and t_facts[1:] == [True, True]
    if p == 0.0:
        assert torch.equal(y, t)  # both untouched: same input
    elif p == 1.0:
        assert not y.any() and not t.any()
    else:
        x = make(SHAPES[name][size], layout, torch.float32)
        check_dropped(name, x, t, p, ours=False)
        check_dropped(name, x, y, p, ours=True)


# --- gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", ["sum", "dense", "channels_last"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "permuted", "sliced"])
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_torch_in_layout_and_pattern(name, size, layout, upstream):
    ours_cls, torch_cls = PAIRS[name]
    grads = []
    for cls in (torch_cls, ours_cls):
        x = make(SHAPES[name][size], layout, torch.float64).requires_grad_(True)
        h = x * 1.0  # a non-leaf: its raw gradient is not re-laid out like a leaf's
        torch.manual_seed(3)
        y = cls(0.3)(h)
        if upstream == "sum":
            (g,) = torch.autograd.grad(y.sum(), h)
        else:
            up = make(y.shape, "contiguous" if upstream == "dense" else "channels_last", y.dtype)
            (g,) = torch.autograd.grad(y, h, up)
            g = g / up  # the mask's own values, 0 or the scale (a for alpha)
        assert g.shape == h.shape
        grads.append((g, y.detach(), h.detach()))
    (tg, ty, th), (yg, yy, yh) = grads
    assert yg.stride() == tg.stride()
    for g, y, h in ((tg, ty, th), (yg, yy, yh)):
        if name in ALPHA:
            a = 1.0 / math.sqrt((ALPHA_PRIME**2 * 0.3 + 1.0) * (1.0 - 0.3))
            kept = (y - a * h).abs() <= 1e-9 + (y - a * ALPHA_PRIME).abs() * 0
            kept = (g != 0) if upstream != "sum" else kept
            # alpha: the gradient is a where kept, 0 where dropped (float64: a
            # rounds once, the division by up rounds once: 4 eps)
            assert ((g == 0) | ((g - a).abs() <= 4 * torch.finfo(g.dtype).eps * a)).all()
        else:
            # zero gradient exactly where the output was dropped, one scale elsewhere
            assert torch.equal(g == 0, y == 0)
            kept = g[g != 0]
            assert torch.allclose(kept, kept[:1].expand_as(kept), rtol=0, atol=1e-15)


# --- module protocol: isinstance, state_dict, repr, copy, pickle ---------------------------


@pytest.mark.parametrize("name", NAMES)
def test_module_is_an_instance_of_the_torch_class_with_its_state_and_repr(name):
    ours_cls, torch_cls = PAIRS[name]
    ours, theirs = ours_cls(0.25, inplace=True), torch_cls(0.25, inplace=True)
    assert isinstance(ours, torch_cls) and isinstance(ours, _DropoutNd)
    assert repr(ours) == repr(theirs) and repr(ours_cls()) == repr(torch_cls())
    assert ours.state_dict() == theirs.state_dict() == {}
    ours.load_state_dict(theirs.state_dict(), strict=True)
    # the type filters of baal's patch_module / torch-uncertainty's mc_dropout
    model = nn.Sequential(nn.Linear(4, 4), ours)
    assert [m for m in model.modules() if isinstance(m, _DropoutNd)] == [ours]
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert type(clone) is ours_cls and repr(clone) == repr(theirs)
        assert clone.p == 0.25 and clone.inplace is True and clone.training


# --- TorchScript ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", NAMES)
def test_jit_script_alone_and_in_sequential_runs_torchs_functional(name):
    ours_cls, torch_cls = PAIRS[name]
    x = make(SHAPES[name]["small"], "contiguous", torch.float32)
    for wrap in (lambda m: m, lambda m: nn.Sequential(nn.Identity(), m)):
        scripted_ours = torch.jit.script(wrap(ours_cls(0.3)))
        scripted_theirs = torch.jit.script(wrap(torch_cls(0.3)))
        torch.manual_seed(4)
        y = scripted_ours(x)
        torch.manual_seed(4)
        t = scripted_theirs(x)
        # scripted, both run torch's F.* on the same generator state: bit equal
        assert torch.equal(y, t)
        assert torch.equal(scripted_ours.eval()(x), x)


# --- vmap ------------------------------------------------------------------------------


def test_vmap_different_randomness_on_the_issue_example():
    y = torch.func.vmap(dn.Dropout(0.5), randomness="different")(torch.ones(4, 3000))
    assert y.shape == (4, 3000) and set(y.unique().tolist()) <= {0.0, 2.0}
    assert len({tuple(row.tolist()) for row in y}) == 4  # one mask per row
    for row in y:
        assert binomial_ok((row == 0).double().mean().item(), 0.5, row.numel())


@pytest.mark.parametrize("randomness", ["different", "same", "error"])
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("name", NAMES)
def test_vmap_randomness_modes_match_torch(name, size, randomness):
    ours_cls, torch_cls = PAIRS[name]
    unit = SHAPES[name][size][1:] if name in UNBATCHED else SHAPES[name][size]
    if name in FEATURE and name not in UNBATCHED:
        unit = SHAPES[name][size]  # Dropout2d/FeatureAlpha need the batch dim inside too
    x = make((3, *unit[:1], *unit[1:]), "contiguous", torch.float32)
    outs = []
    for cls in (torch_cls, ours_cls):
        fn = torch.func.vmap(cls(0.3), randomness=randomness)
        outs.append(run(fn, x))
    assert_same_outcome(outs[1], outs[0])
    (t, _), (y, _) = outs
    if isinstance(t, Exception):
        return
    assert (y.shape, y.dtype) == (t.shape, t.dtype)
    a = 1.0 / math.sqrt((ALPHA_PRIME**2 * 0.3 + 1.0) * (1.0 - 0.3))
    dropped_value = a * ALPHA_PRIME - a * ALPHA_PRIME * 0.3 if name in ALPHA else 0.0
    for out in (t, y):
        dropped = (out - dropped_value).abs() < 1e-4  # x > 0.5: a kept value is far
        same = all(torch.equal(dropped[0], d) for d in dropped[1:])
        if randomness == "same":
            assert same  # one mask for every vmapped row
        elif draws(name, tuple(x.shape[1:])) >= 64:
            assert not same


# --- torch.compile ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "layout"),
    [("Dropout", "channels_last"), ("Dropout2d", "channels_last"), ("AlphaDropout", "contiguous")],
)
def test_torch_compile_fullgraph_matches_eager_torch(name, layout):
    ours_cls, torch_cls = PAIRS[name]
    torch._dynamo.reset()
    x = make(SHAPES[name]["large"], layout, torch.float32)
    y = torch.compile(ours_cls(0.3), fullgraph=True)(x)
    t = torch_cls(0.3)(x)
    assert (y.shape, y.dtype, y.stride()) == (t.shape, t.dtype, t.stride())
    check_dropped(name, x, y, 0.3, ours=True)


# --- the documented differences (README table) raise instead of differing silently -------


@pytest.mark.parametrize(
    ("name", "shape"),
    [("Dropout2d", (2, 3)), ("Dropout2d", (1, 2, 3, 4, 5)), ("Dropout3d", (2, 3, 4))]
    + [("Dropout3d", (1, 2, 3, 4, 5, 6)), ("Dropout2d", (5,)), ("Dropout3d", (2, 3))],
)
def test_ranks_torch_only_warns_about_raise(name, shape):
    # torch warns "deprecated ... will result in an error in a future release"
    # and drops anyway; dropkit raises, in training and eval alike
    ours_cls, torch_cls = PAIRS[name]
    with pytest.warns(UserWarning, match="deprecated"):
        try:
            torch_cls(0.3)(torch.ones(shape))
        except RuntimeError:  # 1-D: torch's feature dropout then fails after the warning
            pass
    for train in (True, False):
        with pytest.raises(DropoutShapeError, match=re.escape(f"{name}: expected a ")):
            ours_cls(0.3).train(train)(torch.ones(shape))


def test_shape_errors_are_value_and_runtime_errors():
    for exc in (ValueError, RuntimeError):
        with pytest.raises(exc, match=r"^Dropout1d: expected a 2-D or 3-D input"):
            dn.Dropout1d(0.3)(torch.ones(2, 3, 4, 5))
        with pytest.raises(exc, match=r"^FeatureAlphaDropout: expected an input of 2 or more"):
            dn.FeatureAlphaDropout(0.3)(torch.ones(3))

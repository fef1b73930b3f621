"""One contract suite, parametrised over every registered dropout variant.

Each variant is described by a Case: how to build it, what input it takes,
what its eval output must be, and how to read the random structure it drew
(per independent unit: the kept fraction and the multiplier applied). The
tests below then check the same contract for all of them. Statistical checks
use 6-sigma bounds computed from the distribution: for a unit whose dropped
fraction lies in [0, 1] with mean p, the variance is at most p(1-p)
(Bhatia-Davis), which is the binomial bound for binary units.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dropkit.functional as DF
from dropkit._registry import create_dropout, registered
from dropkit.nn.alpha import alpha_coefficients

SIGMA = 6.0
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Case:
    """A plain variant: ``out = module(x)``, identity in eval."""

    shape: tuple[int, ...] = (64, 64)
    kwargs: dict = {}
    repeats = 10  # forward passes pooled by observe(): about 40k units in all

    def __init__(self, name: str, **kwargs: object) -> None:
        self.name = name
        self.kwargs = {**self.kwargs, **kwargs}

    def make(self, p: float, generator: torch.Generator | None = None) -> nn.Module:
        return create_dropout(self.name, p=p, generator=generator, **self.kwargs)

    small: tuple[int, ...] = (4, 4)  # input size for gradcheck

    def input(self, dtype: torch.dtype = torch.float32, shape=None) -> torch.Tensor:
        # strictly positive, so a zero output means "dropped"
        shape = shape or self.shape
        return (torch.rand(shape, generator=gen(99), dtype=torch.float64) + 0.5).to(dtype)

    def call(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)

    def reference(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x

    def unit_view(self, m: torch.Tensor) -> torch.Tensor:
        """Reduce an element multiplier to one value per independent unit."""
        return m.reshape(-1)

    def observe(self, module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Return (dropped fraction per unit, multiplier per unit), float64."""
        parts = [self.observe_once(module) for _ in range(self.repeats)]
        dropped = [d for d, _ in parts]
        mult = torch.cat([m for _, m in parts])
        return (None if dropped[0] is None else torch.cat(dropped)), mult

    def observe_once(self, module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor]:
        x = self.input(torch.float64)
        m = self.unit_view(self.call(module, x) / x)
        return (m == 0).double(), m

    def moments(self, p: float) -> tuple[float, float]:
        """Mean and (a bound on the) variance of the per-unit multiplier."""
        return 1.0, p / (1.0 - p)

    def grad(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradient of sum(out) w.r.t. the dropped tensor, dropped mask, multiplier."""
        x = self.input(torch.float64).requires_grad_(True)
        out = self.call(module, x)
        out.sum().backward()
        assert x.grad is not None
        return x.grad, out.detach() == 0, out.detach() / x.detach()

    def gradcheck_fn(self, module: nn.Module):
        def fn(t: torch.Tensor) -> torch.Tensor:
            module.generator = gen(7)
            return self.call(module, t)

        return fn, self.input(torch.float64, self.small).requires_grad_(True)


class Spatial(Case):
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        super().__init__(name)
        self.shape = shape
        self.small = (2, 3, *shape[2:])
        self.repeats = 40960 // (shape[0] * shape[1])

    def unit_view(self, m: torch.Tensor) -> torch.Tensor:
        return m.reshape(*m.shape[:2], -1)[..., 0].reshape(-1)  # one value per (N, C)


class Locked(Case):
    shape = (3, 64, 64)  # (L, N, C)
    small = (3, 2, 3)

    def unit_view(self, m: torch.Tensor) -> torch.Tensor:
        return m[0].reshape(-1)


class Path(Case):
    shape = (2048, 3)
    small = (5, 3)
    repeats = 20

    def unit_view(self, m: torch.Tensor) -> torch.Tensor:
        return m[:, 0]


class Attention(Case):
    shape = (4, 2, 16, 32)
    small = (1, 2, 3, 4)

    def input(self, dtype: torch.dtype = torch.float32, shape=None) -> torch.Tensor:
        scores = torch.randn(shape or self.shape, generator=gen(99), dtype=torch.float64)
        return scores.softmax(-1).to(dtype)


class Gaussian(Case):
    def observe_once(self, module):
        _, m = super().observe_once(module)
        return None, m

    def grad(self, module):
        g, _, m = super().grad(module)
        return g, torch.zeros_like(g, dtype=torch.bool), m


class Block(Case):
    shape = (64, 16, 6, 6)
    small = (2, 2, 4, 4)
    kwargs = {"block_size": 3}

    def observe_once(self, module):
        x = self.input(torch.float64)
        m = self.call(module, x) / x
        per_map = m.reshape(-1, 36)
        return (per_map == 0).double().mean(1), per_map.mean(1)

    def moments(self, p: float) -> tuple[float, float]:
        _, probs = DF.block_gamma(6, 6, 3, p)
        # Var(mean over a map) <= mean of the element variances (Cauchy-Schwarz)
        return 1.0, float((probs / (1 - probs)).mean())


class Alpha(Case):
    def observe_once(self, module):
        # positive x: kept units give a*x + b > 0, dropped ones a*alpha'*(1-p) < 0
        x = self.input(torch.float64)
        kept = self.unit_view((self.call(module, x) > 0).double())
        return 1.0 - kept, kept

    def moments(self, p: float) -> tuple[float, float]:
        return 1.0 - p, p * (1.0 - p)  # the multiplier here is the keep indicator

    def grad(self, module):
        x = self.input(torch.float64).requires_grad_(True)
        out = self.call(module, x)
        out.sum().backward()
        assert x.grad is not None
        a, _ = alpha_coefficients(module.p)
        return x.grad, out.detach() < 0, (out.detach() > 0).double() * a


class FeatureAlpha(Alpha):
    shape = (64, 64, 2)
    small = (2, 3, 2)

    def unit_view(self, m):
        return m[..., 0].reshape(-1)


class Concrete(Case):
    def make(self, p, generator=None):
        return create_dropout(self.name, module=nn.Identity(), p=p, generator=generator)

    def observe_once(self, module):
        _, m = super().observe_once(module)
        # relaxed drop z > 1/2 exactly when the underlying Bernoulli(p) draw drops
        return (m * (1 - module.p) < 0.5).double(), m

    def moments(self, p: float) -> tuple[float, float]:
        n = 400_000
        u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        logit = math.log(p) - math.log1p(-p)
        keep = torch.sigmoid(-(logit + u.log() - (-u).log1p()) / 0.1) / (1 - p)
        return float(keep.mean()), float(keep.var())

    def grad(self, module):
        g, _, m = super().grad(module)
        return g, torch.zeros_like(g, dtype=torch.bool), m


class Weight(Case):
    """WeightDrop(Linear(64, 64, bias=False)); units are weight entries."""

    def make(self, p, generator=None):
        torch.manual_seed(5)
        lin = nn.Linear(64, 64, bias=False)
        return create_dropout(self.name, module=lin, p=p, generator=generator)

    def reference(self, module, x):
        return x @ module.module.parametrizations.weight.original.T

    def effective(self, module) -> tuple[torch.Tensor, torch.Tensor]:
        w = module.module.parametrizations.weight.original
        eye = torch.eye(64, dtype=w.dtype)
        return module(eye).T, w  # eye @ W_eff^T = W_eff^T exactly

    def observe_once(self, module):
        w_eff, w = self.effective(module)
        m = (w_eff / w).detach().reshape(-1)
        return (m == 0).double(), m

    def grad(self, module):
        module.generator = gen(3)
        w_eff, w = self.effective(module)
        w.grad = None
        module.generator = gen(3)
        module(torch.rand(5, 64, dtype=w.dtype, generator=gen(1))).sum().backward()
        return w.grad, w_eff.detach() == 0, None

    def gradcheck_fn(self, module):
        def fn(t):
            module.generator = gen(7)
            return module(t)

        return fn, torch.rand(3, 64, dtype=torch.float64, generator=gen(2)).requires_grad_(True)


class Embedding(Case):
    vocab = 4096

    def make(self, p, generator=None):
        torch.manual_seed(5)
        return create_dropout(
            self.name, num_embeddings=self.vocab, embedding_dim=2, p=p, generator=generator
        )

    def input(self, dtype=torch.float32, shape=None):
        return torch.arange(self.vocab)

    def reference(self, module, ids):
        return module.weight[ids]

    def observe_once(self, module):
        ids = self.input()
        m = (module(ids) / module.weight[ids]).detach()[:, 0]
        return (m == 0).double(), m

    def grad(self, module):
        module.weight.grad = None
        out = module(self.input())
        out.sum().backward()
        return module.weight.grad, out.detach() == 0, None

    def gradcheck_fn(self, module):
        ids = torch.tensor([[0, 1, 2, 1], [3, 3, 0, 2]])

        def fn(weight):
            return DF.embedding_dropout(weight, ids, module.p, generator=gen(7))

        return fn, module.weight.detach()[:4].clone().requires_grad_(True)


class _Shift(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.shift = nn.Parameter(torch.tensor(c))

    def forward(self, x):
        return x * self.scale + self.shift


class Layer(Case):
    """LayerDrop over 12 layers adding 2**i: the output of 0 encodes which ran."""

    n = 12
    repeats = 1000

    def make(self, p, generator=None):
        layers = [_Shift(2.0**i) for i in range(self.n)]
        return create_dropout(self.name, layers=layers, p=p, generator=generator)

    def input(self, dtype=torch.float32, shape=None):
        return torch.zeros(2, dtype=dtype)

    def reference(self, module, x):
        return x + (2**self.n - 1)

    def observe_once(self, module):
        code = int(module.double()(torch.zeros(1, dtype=torch.float64)).item())
        kept = torch.tensor([(code >> i) & 1 for i in range(self.n)]).double()
        return 1.0 - kept, kept

    def moments(self, p):
        return 1.0 - p, p * (1.0 - p)  # LayerDrop does not rescale (Fan et al.)

    def grad(self, module):
        module.generator = gen(3)
        kept = torch.tensor(DF.layer_drop(self.n, module.p, generator=gen(3)))
        module(torch.ones(3, dtype=torch.float64)).sum().backward()
        grads = torch.stack(
            [
                m.shift.grad if m.shift.grad is not None else torch.zeros(())
                for m in module.children()
            ]
        )
        return grads, ~kept, None

    def gradcheck_fn(self, module):
        def fn(t):
            module.generator = gen(7)
            return module(t)

        return fn, torch.rand(3, dtype=torch.float64, generator=gen(2)).requires_grad_(True)


CASES = {
    "dropout": Case("dropout"),
    "dropout1d": Spatial("dropout1d", (32, 64, 3)),
    "dropout2d": Spatial("dropout2d", (32, 64, 2, 2)),
    "dropout3d": Spatial("dropout3d", (16, 64, 2, 2, 2)),
    "alpha": Alpha("alpha"),
    "feature_alpha": FeatureAlpha("feature_alpha"),
    "gaussian": Gaussian("gaussian"),
    "locked": Locked("locked"),
    "embedding": Embedding("embedding"),
    "weight": Weight("weight"),
    "attention": Attention("attention"),
    "path": Path("path"),
    "block": Block("block"),
    "layer": Layer("layer"),
    "concrete": Concrete("concrete"),
}
NAMES = sorted(CASES)


def test_every_registered_variant_has_a_case():
    assert sorted(registered()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_identity(name):
    case = CASES[name]
    module = case.make(0.5, gen(0)).eval()
    x = case.input()
    assert torch.equal(case.call(module, x), case.reference(module, x))


@pytest.mark.parametrize("name", NAMES)
def test_p_zero_is_identity(name):
    case = CASES[name]
    module = case.make(0.0, gen(0)).train()
    x = case.input()
    assert torch.equal(case.call(module, x), case.reference(module, x))


@pytest.mark.parametrize("p", [0.2, 0.5])
@pytest.mark.parametrize("name", NAMES)
def test_expectation_preserved(name, p):
    case = CASES[name]
    module = case.make(p, gen(1))
    mean, var = case.moments(p)
    with torch.no_grad():
        _, mult = case.observe(module)
    bound = SIGMA * math.sqrt(var / mult.numel())
    assert abs(mult.mean().item() - mean) <= bound, (mult.mean().item(), mean, bound)
    if name == "concrete":  # the relaxation's bias is small at temperature 0.1
        assert abs(mean - 1.0) < 0.05


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("name", NAMES)
def test_drop_rate_within_binomial_bounds(name, p):
    case = CASES[name]
    module = case.make(p, gen(2))
    with torch.no_grad():
        dropped, mult = case.observe(module)
    if dropped is None:  # Gaussian: nothing is dropped; check the noise variance
        var = p / (1 - p)
        k = mult.numel()
        assert abs(mult.var().item() / var - 1.0) <= SIGMA * math.sqrt(2.0 / (k - 1))
        return
    k = dropped.numel()
    bound = SIGMA * math.sqrt(p * (1 - p) / k)
    assert abs(dropped.mean().item() - p) <= bound, (dropped.mean().item(), p, bound)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    case = CASES[name]
    module = case.make(0.4, gen(0)).double()
    fn, t = case.gradcheck_fn(module)
    assert torch.autograd.gradcheck(fn, (t,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_zero_gradient_exactly_where_dropped(name):
    case = CASES[name]
    module = case.make(0.5, gen(4)).double()
    grad, dropped, mult = case.grad(module)
    assert torch.all(grad[dropped] == 0)
    assert torch.all(grad[~dropped] != 0)
    if name in ("gaussian", "concrete"):
        torch.testing.assert_close(grad, mult)  # no hard drops: d out / d x = multiplier
    else:
        assert dropped.any()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_dtype_and_shape_preserved(name, dtype):
    case = CASES[name]
    module = case.make(0.3, gen(0)).to(dtype)
    x = case.input(dtype)
    expected = case.reference(module.eval(), x)
    out = case.call(module.train(), x)
    assert out.dtype == expected.dtype == dtype
    assert out.shape == expected.shape


@pytest.mark.parametrize("name", NAMES)
def test_seeded_generator_is_reproducible(name):
    case = CASES[name]
    x = case.input()

    def draws(seed):
        module = case.make(0.5, gen(seed))
        with torch.no_grad():
            return torch.cat([case.call(module, x).reshape(-1) for _ in range(6)])

    assert torch.equal(draws(11), draws(11))
    assert not torch.equal(draws(11), draws(12))

"""Bad input to mc_predict: pinned messages, and the model exactly as before."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropkit.uncertainty import mc_predict


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))


class Softmaxed(nn.Module):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.net, self.scale = mlp(), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), -1) * self.scale


class LayerDrop(nn.Module):
    """A third-party per-call site: skips its layer for the whole batch."""

    kind = "layer"

    def __init__(self) -> None:
        super().__init__()
        self.p = 0.5
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and float(torch.rand(())) < self.p:
            return x
        return self.lin(x)


def snapshot(model: nn.Module) -> tuple[list[bool], dict[str, torch.Tensor], list[float]]:
    rates = [float(m.p) for m in model.modules() if hasattr(m, "p")]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return [m.training for m in model.modules()], state, rates


def unchanged(model: nn.Module, before: tuple) -> bool:
    flags, state, rates = snapshot(model)
    return (
        flags == before[0]
        and all(torch.equal(state[k], before[1][k]) for k in state)
        and rates == before[2]
        and not any("forward" in m.__dict__ for m in model.modules())
    )


X = torch.randn(5, 4)
CASES = [
    (mlp, {"samples": 0}, ValueError, r"mc_predict: expected samples >= 1, but got 0"),
    (mlp, {"samples": 2.5}, TypeError, r"mc_predict: expected samples to be an int"),
    (mlp, {"output": "scores"}, ValueError, r"expected output to be one of \['logits', 'probs'"),
    (
        lambda: Softmaxed(2.0),
        {"output": "probs"},
        ValueError,
        r"expected output='probs' rows that are non-negative and sum to 1, "
        r"but got 'row sums in \[2",
    ),
    (mlp, {"output": "probs"}, ValueError, r"expected output='probs' rows"),
    (
        lambda: nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 1)),
        {},
        ValueError,
        r"expected output='logits' of shape \(N, \.\.\., C\) with C >= 2",
    ),
    (mlp, {"output": "regression", "tau": 0.0}, ValueError, r"expected tau > 0, but got 0.0"),
    (mlp, {"output": "regression", "tau": -1}, ValueError, r"expected tau > 0, but got -1"),
    (mlp, {"tau": 1.0}, ValueError, r"expected tau, heteroscedastic and target only with"),
    (
        mlp,
        {"output": "regression", "target": torch.zeros(5)},
        ValueError,
        r"expected tau or heteroscedastic=True to score targets",
    ),
    (
        mlp,
        {"output": "regression", "heteroscedastic": True},
        ValueError,
        r"expected a heteroscedastic output \(mean, log_var\)",
    ),
    (
        mlp,
        {"output": "regression", "heteroscedastic": True, "tau": 1.0},
        ValueError,
        r"expected tau=None with heteroscedastic=True",
    ),
    (
        mlp,
        {"output": "regression", "tau": 1.0, "target": torch.zeros(4)},
        ValueError,
        r"expected target with 5 rows \(one per input\), but got \(4,\)",
    ),
    (mlp, {"tol": 0}, ValueError, r"expected tol > 0, but got 0"),
    (mlp, {"tol": 0.1, "min_samples": 1}, ValueError, r"expected min_samples >= 2, but got 1"),
    (
        mlp,
        {"tol": 0.1, "samples": 5, "min_samples": 8},
        ValueError,
        r"expected min_samples <= max_samples \(5\), but got 8",
    ),
    (mlp, {"strategy": "fast"}, ValueError, r"expected strategy to be one of"),
    (mlp, {"memory_mb": 0}, ValueError, r"expected memory_mb > 0"),
    (mlp, {"seed": 1.5}, TypeError, r"expected seed to be an int or None"),
    (mlp, {"features": nn.Identity()}, ValueError, r"expected features= and head= together"),
    (
        lambda: nn.Sequential(nn.Linear(4, 3)),
        {},
        RuntimeError,
        r"mc_mode: expected at least one dropout site with p > 0",
    ),
    (
        lambda: nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.0), nn.Linear(8, 2)),
        {},
        RuntimeError,
        r"mc_mode: expected at least one dropout site with p > 0",
    ),
    (
        lambda: nn.Sequential(LayerDrop(), nn.Linear(4, 2)),
        {"strategy": "batched"},
        ValueError,
        r"expected row-wise dropout sites for strategy='batched', but got \['0'\]",
    ),
]


@pytest.mark.parametrize(("make", "kw", "exc", "match"), CASES)
@pytest.mark.parametrize("train", [False, True])
def test_bad_input_raises_and_leaves_model_as_before(make, kw, exc, match, train):
    model = make()
    model.train(train)
    before = snapshot(model)
    with pytest.raises(exc, match=match):
        mc_predict(model, X, **kw)
    assert unchanged(model, before)


def test_bad_types():
    with pytest.raises(TypeError, match=r"mc_predict: expected model to be a torch.nn.Module"):
        mc_predict(lambda x: x, X)
    with pytest.raises(
        TypeError, match=r"expected inputs to be a tensor, a mapping or an iterable"
    ):
        mc_predict(mlp(), "some text")
    with pytest.raises(ValueError, match=r"expected at least one batch, but got 'an empty"):
        mc_predict(mlp(), [])
    with pytest.raises(TypeError, match=r"expected progress to be None, True or False"):
        mc_predict(mlp(), X, progress="yes")


def test_explicit_split_must_hold_the_sites():
    model = mlp()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"expected features= to hold no active dropout site"):
        mc_predict(model, X, features=model, head=model[3])
    with pytest.raises(ValueError, match=r"expected every active dropout site inside head="):
        mc_predict(model, X, features=model[:2], head=model[3])
    assert unchanged(model, before)


def test_per_call_sites_fall_back_to_loop():
    got = mc_predict(nn.Sequential(LayerDrop(), nn.Linear(4, 2)), X, samples=4, seed=0)
    assert got.extras["strategy"] == "loop" and "per-call" in got.extras["strategy_reason"]


def test_wrong_row_count_from_model():
    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).mean(0, keepdim=True)

    model = Pooled()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"expected the model to return one row per input"):
        mc_predict(model, X, samples=2)
    assert unchanged(model, before)

"""Bad input to the library fails fast with the house error, and changes nothing.

Every case pins its message (``{call}: expected {what}, but got {value!r}.
{fix}``) and, where a model is involved, checks it bit for bit afterwards.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit
import dropkit.functional as DF
from dropkit import (
    ConcreteDropout,
    EmbeddingDropout,
    WeightDrop,
    create_dropout,
    find_dropout,
    mc_mode,
    mc_predict,
    set_dropout,
)
from dropkit.uncertainty import _limits
from tests._toy_models import make_net, same_state, state


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3)).eval()


X = torch.randn(6, 4)
W = torch.randn(10, 3)
IDS = torch.tensor([[1, 2, 3]])


# -- booleans: only True / False ---------------------------------------------------------

# One valid call per public callable with a boolean option, taking that option as a keyword.
BOOL_CALLS: dict[str, Callable[..., Any]] = {
    "AlphaDropout": lambda **kw: dropkit.AlphaDropout(0.1, **kw),
    "AttentionDropout": lambda **kw: dropkit.AttentionDropout(0.1, **kw),
    "DropBlock2d": lambda **kw: dropkit.DropBlock2d(0.1, **kw),
    "DropPath": lambda **kw: dropkit.DropPath(0.1, **kw),
    "Dropout": lambda **kw: dropkit.Dropout(0.1, **kw),
    "Dropout1d": lambda **kw: dropkit.Dropout1d(0.1, **kw),
    "Dropout2d": lambda **kw: dropkit.Dropout2d(0.1, **kw),
    "Dropout3d": lambda **kw: dropkit.Dropout3d(0.1, **kw),
    "FeatureAlphaDropout": lambda **kw: dropkit.FeatureAlphaDropout(0.1, **kw),
    "GaussianDropout": lambda **kw: dropkit.GaussianDropout(0.1, **kw),
    "LayerDrop": lambda **kw: dropkit.LayerDrop(nn.ModuleList([nn.Identity()]), 0.1, **kw),
    "LockedDropout": lambda **kw: dropkit.LockedDropout(0.1, **kw),
    "DropoutBase": lambda **kw: dropkit.nn.DropoutBase(0.1, **kw),
    "compare_uncertainty": lambda **kw: dropkit.compare_uncertainty(
        mlp(), (X, torch.zeros(6, dtype=torch.long)), methods=["softmax"], **kw
    ),
    "fast_dropout": lambda **kw: dropkit.fast_dropout(make_net(), **kw),
    "find_dropout": lambda **kw: find_dropout(mlp(), **kw),
    "mc_predict": lambda **kw: mc_predict(mlp(), X, samples=2, **kw),
    "MCMode": lambda **kw: dropkit.MCMode(mlp(), **kw).restore(),
    "alpha_dropout": lambda **kw: DF.alpha_dropout(torch.ones(4), 0.1, **kw),
    "attention_dropout": lambda **kw: DF.attention_dropout(torch.ones(1, 2, 2), 0.1, **kw),
    "concrete_dropout": lambda **kw: DF.concrete_dropout(torch.ones(4), torch.tensor(0.0), **kw),
    "drop_block2d": lambda **kw: DF.drop_block2d(torch.ones(1, 1, 4, 4), 0.1, **kw),
    "drop_connect": lambda **kw: DF.drop_connect(torch.ones(2, 2), 0.1, **kw),
    "drop_path": lambda **kw: DF.drop_path(torch.ones(2, 3), 0.1, **kw),
    "dropout": lambda **kw: DF.dropout(torch.ones(4), 0.1, **kw),
    "dropout1d": lambda **kw: DF.dropout1d(torch.ones(1, 2, 3), 0.1, **kw),
    "dropout2d": lambda **kw: DF.dropout2d(torch.ones(1, 2, 3, 3), 0.1, **kw),
    "dropout3d": lambda **kw: DF.dropout3d(torch.ones(1, 2, 2, 2, 2), 0.1, **kw),
    "embedding_dropout": lambda **kw: DF.embedding_dropout(W, IDS, 0.1, **kw),
    "feature_alpha_dropout": lambda **kw: DF.feature_alpha_dropout(torch.ones(2, 2), 0.1, **kw),
    "gaussian_dropout": lambda **kw: DF.gaussian_dropout(torch.ones(4), 0.1, **kw),
    "layer_drop": lambda **kw: DF.layer_drop(3, 0.1, **kw),
    "locked_dropout": lambda **kw: DF.locked_dropout(torch.ones(2, 2, 2), 0.1, **kw),
    "softmax_predict": lambda **kw: dropkit.baselines.softmax_predict(mlp(), X, **kw),
    "run_active_learning": lambda **kw: dropkit.active.run_active_learning(
        X,
        torch.zeros(6, dtype=torch.long),
        (X, torch.zeros(6, dtype=torch.long)),
        train_fn=lambda x, y, seed: mlp(),
        **kw,
    ),
    "check_placement": lambda **kw: dropkit.training.check_placement(mlp(), **kw),
    "recommend_rate": lambda **kw: dropkit.training.recommend_rate(1000, dataset_size=100, **kw),
    "MCAccumulator": lambda **kw: dropkit.uncertainty.MCAccumulator(3, **kw),
    "score_pool": lambda **kw: dropkit.score_pool(mlp(), X, **kw),
    "HMC": lambda **kw: dropkit.baselines.HMC(mlp(), likelihood="classification", **kw),
}
# Records (dataclasses whose bool fields are results, not options) are not checked.
RECORDS = {"DropoutSite", "Verdict", "BatchBALDResult"}


def public_bool_options() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    mods = [dropkit, dropkit.nn, DF, dropkit.baselines, dropkit.active, dropkit.training]
    mods.append(dropkit.uncertainty)
    for mod in mods:
        for name in mod.__all__:
            obj = getattr(mod, name)
            fn = obj.__init__ if inspect.isclass(obj) else obj
            if not callable(fn) or name in RECORDS:
                continue
            try:
                params = inspect.signature(fn).parameters.values()
            except (TypeError, ValueError):
                continue
            for p in params:
                if isinstance(p.default, bool) or str(p.annotation) in ("bool", "bool | None"):
                    found.add((name, p.name))
    return found


OPTIONS = sorted(public_bool_options())


def test_every_boolean_option_has_a_case() -> None:
    # a new boolean option must get a row in BOOL_CALLS (and so a check)
    assert {name for name, _ in OPTIONS} <= set(BOOL_CALLS), {n for n, _ in OPTIONS} - set(
        BOOL_CALLS
    )


@pytest.mark.parametrize(("name", "option"), OPTIONS)
@pytest.mark.parametrize("value", ["no", 1, None])
def test_boolean_options_refuse_non_bools(name: str, option: str, value: object) -> None:
    if value is None and option == "progress":
        return  # progress=None means "when stderr is a terminal"
    what = rf"expected {option} to be ((None, )?True or False|a bool), but got {value!r}"
    with pytest.raises(TypeError, match=rf"{name}: {what}"):
        BOOL_CALLS[name](**{option: value})


def test_boolean_options_accept_bools_and_numpy_bools() -> None:
    np = pytest.importorskip("numpy")
    assert dropkit.Dropout(0.1, inplace=np.bool_(True)).inplace is True
    assert DF.dropout(torch.ones(3), 0.5, training=False).sum() == 3
    layer = dropkit.Dropout(0.1)
    with pytest.raises(TypeError, match="Dropout: expected inplace to be True or False"):
        layer.inplace = "no"  # assignment is checked too, the old value stays
    assert layer.inplace is False


# -- sites / kinds / where ---------------------------------------------------------------


def test_wrong_typed_selectors_raise_house_errors() -> None:
    net = make_net().eval()
    before = state(net)
    with pytest.raises(TypeError, match="set_dropout: expected kinds to be None, a site kind"):
        set_dropout(net, 0.1, kinds=5)
    with pytest.raises(TypeError, match="set_dropout: expected where to be None, a glob"):
        set_dropout(net, 0.1, where=5)
    with pytest.raises(TypeError, match=r"set_dropout: expected where to take 1 positional"):
        set_dropout(net, 0.1, where=lambda site, depth: True)
    with pytest.raises(TypeError, match=r"set_dropout: expected p to take 2 positional argu"):
        set_dropout(net, lambda site: 0.1)
    with pytest.raises(TypeError, match="mc_mode: expected sites to be None, 'head', a kind"):
        mc_mode(net, sites=3)
    with pytest.raises(TypeError, match=r"mc_mode: expected sites to take 1 positional"):
        mc_mode(net, sites=lambda a, b: True)
    with pytest.raises(TypeError, match="mc_predict: expected keep_samples to be True or F"):
        mc_predict(net, torch.randn(2, 8), keep_samples="no")
    assert same_state(before, state(net))


def test_a_single_name_is_one_name_not_its_characters() -> None:
    lin = nn.Linear(3, 3)
    wd = WeightDrop(lin, p=0.5, weights="weight")
    assert wd.weights == ["weight"]
    with pytest.raises(TypeError, match="WeightDrop: expected weights to be a name or a list"):
        WeightDrop(nn.Linear(3, 3), p=0.5, weights=5)
    with pytest.raises(ValueError, match="WeightDrop: expected at least one weight name"):
        WeightDrop(nn.Linear(3, 3), p=0.5, weights=[])
    test = (X, torch.zeros(6, dtype=torch.long))
    one = dropkit.compare_uncertainty(mlp(), test, methods="softmax", measure_memory=False)
    assert [r.method for r in one.reports] == ["softmax"]
    # a misspelt single name is reported whole (it used to be iterated: 'm')
    with pytest.raises(ValueError, match=r"expected methods\[i\] to be one of .* 'mc_dropuot'"):
        dropkit.compare_uncertainty(mlp(), test, methods="mc_dropuot")
    with pytest.raises(TypeError, match="compare_uncertainty: expected methods to be a method"):
        dropkit.compare_uncertainty(mlp(), test, methods=5)


# -- mc_predict --------------------------------------------------------------------------


def test_samples_are_bounded_before_anything_runs() -> None:
    net = mlp()
    before = state(net)
    for n in (2**63, 10**12):
        with pytest.raises(
            ValueError, match=r"mc_predict: expected samples <= 1048576 \(2\*\*20\)"
        ):
            mc_predict(net, X, samples=n, keep_samples=True)
    with pytest.raises(ValueError, match=r"expected max_samples <= 1048576"):
        mc_predict(net, X, samples=10, tol=0.1, max_samples=2**40)
    assert same_state(before, state(net))


def test_kept_samples_beyond_memory_are_refused_up_front(monkeypatch) -> None:
    net = mlp()
    before = state(net)
    monkeypatch.setattr(_limits, "memory_limit", lambda: 2**20)  # a 1 MiB machine
    # before any forward: 2**16 samples x 6 rows x at least 2 float32 = 3 MiB
    calls = []
    net[3].register_forward_hook(lambda *a: calls.append(1))  # one call per sample
    with pytest.raises(
        ValueError,
        match=r"mc_predict: expected kept samples to fit in memory \(at most 0.000977 GiB.*"
        r"65536 samples x 6 rows, which would need at least 0.00293 GiB.*keep_samples=False",
    ):
        mc_predict(net, X, samples=2**16, keep_samples=True)
    assert calls == []
    # after the first sample: 2**11 samples x 6 rows x 3 classes x 4 bytes = 144 KiB is
    # under a 128 KiB budget only by the lower bound (96 KiB), not by the real size
    monkeypatch.setattr(_limits, "memory_limit", lambda: 128 * 2**10)
    with pytest.raises(ValueError, match=r"2048 samples x 6 rows, which would need 0.000137 GiB"):
        mc_predict(net, X, samples=2**11, keep_samples=True, seed=0)
    assert len(calls) == 1  # one forward, then refused
    r = mc_predict(net, X, samples=2**11, keep_samples=False, seed=0, strategy="loop")
    assert r.mean.shape == (6, 3)  # summaries stream: no limit
    assert same_state(before, state(net))


def test_loader_kept_samples_are_checked_per_batch(monkeypatch) -> None:
    monkeypatch.setattr(_limits, "memory_limit", lambda: 40 * 2**10)
    loader = [X[:3], X[3:]]  # 1000 samples x 3 rows x 12 bytes = 35 KiB per batch
    net = mlp()
    calls = []
    net[3].register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"1000 samples x 6 rows, which would need 6.71e-05 GiB"):
        mc_predict(net, loader, samples=1000, keep_samples=True, strategy="loop", seed=0)
    assert len(calls) == 1000 + 1  # the first batch, then one sample of the second


def test_min_max_samples_need_tol() -> None:
    net = mlp()
    with pytest.raises(
        ValueError,
        match=r"mc_predict: expected min_samples / max_samples only with tol= .*"
        r"'max_samples=50 and tol=None'. Pass tol=0.01",
    ):
        mc_predict(net, X, samples=10, max_samples=50)
    with pytest.raises(ValueError, match="'min_samples=5 and tol=None'"):
        mc_predict(net, X, min_samples=5)


def test_empty_and_ragged_inputs() -> None:
    net = mlp()
    before = state(net)
    with pytest.raises(
        ValueError, match=r"mc_predict: expected at least one input row, but got .*\(0, 4\)"
    ):
        mc_predict(net, torch.randn(0, 4))

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.drop = nn.Linear(4, 3), nn.Dropout(0.2)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.lin(self.drop(a + b))

    two = Two().eval()
    ragged = {"a": torch.randn(5, 4), "b": torch.randn(3, 4)}
    msg = r"expected the tensors of a mapping batch to agree on their rows .* \{'a': 5, 'b': 3\}"
    with pytest.raises(ValueError, match=msg):
        mc_predict(two, ragged)
    with pytest.raises(ValueError, match=msg):
        mc_predict(two, [ragged])
    # a size-1 tensor broadcasts and is fine
    r = mc_predict(two, {"a": torch.randn(5, 4), "b": torch.randn(1, 4)}, samples=3)
    assert r.mean.shape == (5, 3)
    assert same_state(before, state(net))


def test_probe_errors_say_they_come_from_the_probe() -> None:
    net = make_net().eval()
    before = state(net)
    with pytest.raises(
        RuntimeError, match=r"find_dropout: RuntimeError while probing with probe_inputs=\(2, 5\)"
    ):
        find_dropout(net, probe_inputs=torch.randn(2, 5))
    with pytest.raises(TypeError, match=r"while probing with probe_inputs=\{'y': \(2, 8\)\}"):
        find_dropout(net, probe_inputs={"y": torch.randn(2, 8)})
    assert same_state(before, state(net))


# -- layers and functionals --------------------------------------------------------------


@pytest.mark.parametrize("logit", [float("nan"), float("inf")])
def test_concrete_dropout_refuses_nan_and_inf_logits(logit: float) -> None:
    with pytest.raises(ValueError, match=r"concrete_dropout: expected p_logit finite or -inf"):
        DF.concrete_dropout(torch.ones(3), torch.tensor(logit))
    with pytest.raises(ValueError, match=r"expected p_logit to be a one-element tensor"):
        DF.concrete_dropout(torch.ones(3), torch.zeros(2))
    x = torch.ones(3)
    assert DF.concrete_dropout(x, torch.tensor(float("-inf"))) is x  # p = 0 is identity


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"weight_regularizer": -1}, r"expected weight_regularizer >= 0 .*, but got -1"),
        ({"dropout_regularizer": float("nan")}, r"expected dropout_regularizer >= 0"),
        ({"weight_regularizer": "1e-6"}, r"expected weight_regularizer >= 0"),
        ({"temperature": float("inf")}, r"expected temperature > 0"),
    ],
)
def test_concrete_module_arguments(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match="ConcreteDropout: " + match):
        ConcreteDropout(nn.Linear(2, 2), **kw)
    with pytest.raises(ValueError, match="ConcreteDropout: expected input_dim >= 1"):
        ConcreteDropout(nn.Linear(2, 2), input_dim=0)


def test_embedding_dropout_ids_and_sizes() -> None:
    with pytest.raises(TypeError, match=r"embedding_dropout: expected ids to be an integer t"):
        DF.embedding_dropout(W, IDS.float())
    with pytest.raises(ValueError, match=r"expected ids in \[0, 10\) .* 'ids in \[-1, 3\]'"):
        DF.embedding_dropout(W, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match=r"'ids in \[0, 10\]'"):
        DF.embedding_dropout(W, torch.tensor([0, 10]))
    emb = EmbeddingDropout(num_embeddings=10, embedding_dim=3, p=0.1)
    weight = emb.weight.detach().clone()
    with pytest.raises(ValueError, match=r"EmbeddingDropout: expected ids in \[0, 10\)"):
        emb(torch.tensor([12]))
    assert torch.equal(emb.weight, weight)
    with pytest.raises(ValueError, match=r"EmbeddingDropout: expected num_embeddings >= 1"):
        EmbeddingDropout(num_embeddings=-3, embedding_dim=4)
    with pytest.raises(ValueError, match=r"EmbeddingDropout: expected embedding_dim >= 1"):
        EmbeddingDropout(num_embeddings=3, embedding_dim=0)
    # valid ids give the lookup, side by side with torch's
    assert torch.equal(emb.eval()(IDS), F.embedding(IDS, emb.weight))


def test_create_dropout_lists_valid_keywords() -> None:
    with pytest.raises(
        TypeError,
        match=re.escape(
            "create_dropout: expected keyword arguments of Dropout (p, inplace, generator), "
            "but got 'rate'. The drop probability is p"
        ),
    ):
        create_dropout("dropout", rate=0.1)
    assert create_dropout("dropout", p=0.3).p == 0.3


# -- set_dropout and functional-only models (#16) ---------------------------------------


def test_path_rates_on_a_model_without_path_sites_warn_with_the_fix() -> None:
    net = mlp()
    before = state(net)
    for call in (
        lambda: set_dropout(net, {"path": 0.1}),
        lambda: set_dropout(net, 0.1, sites="path"),
    ):
        with pytest.warns(UserWarning, match=r"select none.*drop_path_rate=0.1"):
            assert call() == []
    assert same_state(before, state(net))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a mapping that applies somewhere stays quiet
        set_dropout(net, {"element": 0.3, "path": 0.1})
    assert net[2].p == 0.3


class RateAttr(nn.Module):
    """A custom forward that passes a float attribute (no 'drop' in its name)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.rate = 0.25

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.lin(x), self.rate, self.training)


def test_functional_only_models_point_to_the_probe_and_set_probed_rates() -> None:
    net = nn.Sequential(RateAttr(), nn.Linear(4, 2)).eval()
    x = torch.randn(3, 4)
    with pytest.raises(RuntimeError, match=r"sites=dropkit.find_dropout\(model, probe_inputs=x"):
        mc_mode(net)
    assert find_dropout(net) == []
    probed = find_dropout(net, probe_inputs=x)
    assert [(s.name, s.control, s.p) for s in probed] == [("0.rate", "attribute", 0.25)]
    changes = set_dropout(net, 0.5, probe_inputs=x)
    assert [(c.path, c.attr, c.old, c.new) for c in changes] == [("0", "rate", 0.25, 0.5)]
    assert net[0].rate == 0.5
    with torch.no_grad(), mc_mode(net, sites=find_dropout(net, probe_inputs=x)):
        assert net[0].training and not torch.equal(net(x), net(x))
    assert not net[0].training


def test_readme_sample_error_is_the_real_one() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    sample = re.search(r"`ValueError: (LockedDropout: [^`]*)`", readme)
    assert sample is not None
    with pytest.raises(ValueError) as info:
        dropkit.LockedDropout(1.5)
    assert str(info.value) == sample.group(1)


def test_scheduler_checks_its_selectors_at_construction() -> None:
    from dropkit.training import DropoutScheduler

    net = mlp()
    with pytest.raises(TypeError, match="DropoutScheduler: expected kinds to be None, a site"):
        DropoutScheduler(net, 0.1, kinds=5)
    with pytest.raises(ValueError, match="DropoutScheduler: expected a site kind, but got 'x'"):
        DropoutScheduler(net, 0.1, kinds=["x"])
    with pytest.raises(TypeError, match="DropoutScheduler: expected where to be None, a glob"):
        DropoutScheduler(net, 0.1, where=5)

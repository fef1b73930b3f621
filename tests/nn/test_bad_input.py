"""Every user-facing error of the variants, with its message pinned."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dn
from dropkit._registry import create_dropout, registered

# name -> extra constructor arguments the variant needs
EXTRA = {
    "embedding": lambda: {"num_embeddings": 5, "embedding_dim": 2},
    "weight": lambda: {"module": nn.Linear(2, 2)},
    "concrete": lambda: {"module": nn.Linear(2, 2)},
    "layer": lambda: {"layers": [nn.Linear(2, 2)]},
}
NAMES = sorted(registered())


def _extra(name):
    return EXTRA.get(name, dict)()


def _interval(cls) -> str:
    return "[0, 1]" if cls.allow_one else "[0, 1)"


BAD_P = [
    (-0.1, ValueError, "in {interval}, but got -0.1. Use a probability such as 0.1."),
    (1.5, ValueError, "in {interval}, but got 1.5. Use a probability such as 0.1."),
    (float("nan"), ValueError, "in {interval}, but got nan. Use a probability such as 0.1."),
    ("0.1", TypeError, "to be a float, but got '0.1'. Pass a float such as 0.1."),
    (
        torch.tensor(0.1),
        TypeError,
        "to be a float, but got tensor(0.1000). Pass p.item() for a one-element tensor.",
    ),
    (True, TypeError, "to be a float, but got True. Pass a float such as 0.1."),
]


@pytest.mark.parametrize(
    ("p", "exc", "tail"), BAD_P, ids=["neg", "gt1", "nan", "str", "tensor", "bool"]
)
@pytest.mark.parametrize("name", NAMES)
def test_constructor_rejects_bad_p(name, p, exc, tail):
    cls = registered()[name]
    message = f"{cls.__name__}: expected p " + tail.format(interval=_interval(cls))
    with pytest.raises(exc, match=re.escape(message)):
        create_dropout(name, p=p, **_extra(name))


@pytest.mark.parametrize("name", NAMES)
def test_assigning_bad_p_later_raises_and_keeps_the_old_value(name):
    module = create_dropout(name, p=0.25, **_extra(name))
    cls = type(module)
    for bad, exc in [(2, ValueError), (-1, ValueError), ("x", TypeError)]:
        with pytest.raises(exc, match=rf"^{cls.__name__}: expected p "):
            module.p = bad
        assert module.p == pytest.approx(0.25)
    assert module.training


@pytest.mark.parametrize(
    "name", [n for n in NAMES if n not in ("alpha", "feature_alpha", "gaussian", "concrete")]
)
def test_p_one_is_allowed_where_it_means_drop_everything(name):
    assert create_dropout(name, p=1.0, **_extra(name)).p == 1.0


FUNCTIONALS = [
    ("dropout", lambda p: DF.dropout(torch.ones(2), p), "[0, 1]"),
    ("dropout1d", lambda p: DF.dropout1d(torch.ones(2, 2), p), "[0, 1]"),
    ("dropout2d", lambda p: DF.dropout2d(torch.ones(2, 2, 2), p), "[0, 1]"),
    ("dropout3d", lambda p: DF.dropout3d(torch.ones(2, 2, 2, 2), p), "[0, 1]"),
    ("alpha_dropout", lambda p: DF.alpha_dropout(torch.ones(2), p), "[0, 1]"),
    ("feature_alpha_dropout", lambda p: DF.feature_alpha_dropout(torch.ones(2, 2), p), "[0, 1]"),
    ("gaussian_dropout", lambda p: DF.gaussian_dropout(torch.ones(2), p), "[0, 1)"),
    ("locked_dropout", lambda p: DF.locked_dropout(torch.ones(2, 2, 2), p), "[0, 1]"),
    (
        "embedding_dropout",
        lambda p: DF.embedding_dropout(torch.ones(3, 2), torch.tensor([0]), p),
        "[0, 1]",
    ),
    ("drop_connect", lambda p: DF.drop_connect(torch.ones(2), p), "[0, 1]"),
    ("attention_dropout", lambda p: DF.attention_dropout(torch.ones(2, 2), p), "[0, 1]"),
    ("drop_path", lambda p: DF.drop_path(torch.ones(2), p), "[0, 1]"),
    ("drop_path_rates", lambda p: DF.drop_path_rates(p, 3), "[0, 1]"),
    ("drop_block2d", lambda p: DF.drop_block2d(torch.ones(1, 1, 3, 3), p, 1), "[0, 1]"),
    ("layer_drop", lambda p: DF.layer_drop(3, p), "[0, 1]"),
]


@pytest.mark.parametrize(
    ("where", "call", "interval"), FUNCTIONALS, ids=[f[0] for f in FUNCTIONALS]
)
def test_functionals_reject_bad_p(where, call, interval):
    message = f"{where}: expected p in {interval}, but got 1.5. Use a probability such as 0.1."
    with pytest.raises(ValueError, match=re.escape(message)):
        call(1.5)
    with pytest.raises(
        TypeError, match=re.escape(f"{where}: expected p to be a float, but got 'a'.")
    ):
        call("a")


RANK_ERRORS = [
    (dn.Dropout1d(), (2, 3, 4, 5), "a 2-D or 3-D input (C, L) or (N, C, L)"),
    (dn.Dropout2d(), (2, 3), "a 3-D or 4-D input (N, C, H, W) or (N, C, L)"),
    (dn.Dropout2d(), (1, 2, 3, 4, 5), "a 3-D or 4-D input (N, C, H, W) or (N, C, L)"),
    (dn.Dropout3d(), (2, 3, 4), "a 4-D or 5-D input (C, D, H, W) or (N, C, D, H, W)"),
    (dn.LockedDropout(), (4, 5), "a 3-D input (L, N, C)"),
    (dn.LockedDropout(batch_first=True), (2, 3, 4, 5), "a 3-D input (N, L, C)"),
    (dn.DropBlock2d(block_size=1), (4, 4), "a 3-D or 4-D input (C, H, W) or (N, C, H, W)"),
]


@pytest.mark.parametrize(("module", "shape", "what"), RANK_ERRORS)
def test_wrong_rank_is_a_value_error_naming_layer_shape_and_fix(module, shape, what):
    name = type(module).__name__
    message = (
        f"{name}: expected {what}, but got {shape}. "
        "Reshape the input or pick the variant for this rank."
    )
    before = (module.training, module.p, repr(module), dict(vars(module)))
    with pytest.raises(ValueError, match=re.escape(message)):
        module(torch.ones(shape))
    # the failed call changed nothing: mode, rate, options and attributes
    assert (module.training, module.p, repr(module), dict(vars(module))) == before


def test_other_rank_errors():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "FeatureAlphaDropout: expected an input of 2 or more dims (N, C, *), but got (3,). "
            "Add the batch and channel dims, or use AlphaDropout for element-wise dropout."
        ),
    ):
        dn.FeatureAlphaDropout()(torch.ones(3))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "AttentionDropout: expected attention probabilities of 2 or more dims (..., L, S), "
            "but got (3,). Apply it to the softmax output of shape (..., L, S)."
        ),
    ):
        dn.AttentionDropout()(torch.ones(3))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "embedding_dropout: expected a 2-D weight (num_embeddings, embedding_dim), but got "
            "(3,). Pass the embedding matrix, e.g. embedding.weight."
        ),
    ):
        DF.embedding_dropout(torch.ones(3), torch.tensor([0]))


def test_block_size_larger_than_the_feature_map():
    block = dn.DropBlock2d(p=0.1, block_size=7)
    message = (
        "DropBlock2d: expected block_size <= min(H, W) = 5 for an input of shape (2, 3, 5, 6), "
        "but got 7. Use block_size <= 5, or apply it to a larger (earlier) feature map."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        block(torch.ones(2, 3, 5, 6))
    # also in eval mode: a misconfigured layer fails early, not only in training
    with pytest.raises(ValueError, match=re.escape(message)):
        block.eval()(torch.ones(2, 3, 5, 6))
    assert block.block_size == 7 and block.p == 0.1


def test_block_arguments():
    with pytest.raises(
        TypeError,
        match=re.escape(
            "DropBlock2d: expected block_size to be an int, but got 2.5. Pass an int >= 1."
        ),
    ):
        dn.DropBlock2d(block_size=2.5)
    with pytest.raises(
        ValueError,
        match=re.escape("DropBlock2d: expected block_size >= 1, but got 0. Pass an int >= 1."),
    ):
        dn.DropBlock2d(block_size=0)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "DropBlock2d: expected normalize to be one of ['batch', 'position'], but got 'row'. "
            "Pick one of batch, position."
        ),
    ):
        dn.DropBlock2d(normalize="row")


def test_generator_and_input_types():
    with pytest.raises(
        TypeError,
        match=re.escape(
            "Dropout: expected generator to be a torch.Generator or None, but got 'int'. "
            "Create one with torch.Generator().manual_seed(0)."
        ),
    ):
        dn.Dropout(generator=0)
    module = dn.Dropout()
    with pytest.raises(TypeError, match=r"^Dropout: expected generator to be a torch.Generator"):
        module.generator = 3
    assert module.generator is None
    with pytest.raises(
        TypeError,
        match=re.escape(
            "dropout: expected input to be a torch.Tensor, but got 'list'. "
            "Pass a tensor (unpack PackedSequence or model outputs first)."
        ),
    ):
        DF.dropout([1.0, 2.0], 0.1)
    with pytest.raises(
        TypeError,
        match=re.escape(
            "LockedDropout: expected input to be a floating-point tensor, but got torch.int64. "
            "Convert it with .float() first."
        ),
    ):
        dn.LockedDropout()(torch.ones(2, 2, 2, dtype=torch.int64))


def test_wrappers_need_something_to_wrap():
    with pytest.raises(
        TypeError,
        match=re.escape(
            "WeightDrop: expected module to be a torch.nn.Module to wrap, but got 'NoneType'. "
            "Pass the layer, e.g. WeightDrop(nn.Linear(4, 4), p=0.5) or "
            "create_dropout('weight', module=layer, p=0.5)."
        ),
    ):
        create_dropout("weight", p=0.5)
    with pytest.raises(
        TypeError,
        match=re.escape(
            "EmbeddingDropout: expected an nn.Embedding to wrap, but got 'NoneType'. "
            "Pass embedding=nn.Embedding(...) or num_embeddings= and embedding_dim=."
        ),
    ):
        create_dropout("embedding", p=0.1)
    with pytest.raises(
        TypeError,
        match=re.escape(
            "ConcreteDropout: expected module to be a torch.nn.Module to wrap, but got 'NoneType'. "
            "Pass the layer the dropout feeds, e.g. ConcreteDropout(nn.Linear(8, 1)) "
            "or create_dropout('concrete', module=layer)."
        ),
    ):
        create_dropout("concrete")
    with pytest.raises(
        TypeError,
        match=re.escape(
            "LayerDrop: expected layers to be a ModuleList or an iterable of modules, but got "
            "'NoneType'. Pass the stack, e.g. LayerDrop(nn.ModuleList(blocks), p=0.1)."
        ),
    ):
        create_dropout("layer")
    with pytest.raises(
        TypeError,
        match=re.escape("LayerDrop: expected every layer to be a torch.nn.Module, but got 'int'."),
    ):
        dn.LayerDrop([nn.Linear(2, 2), 3])


def test_weight_drop_weight_names():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "WeightDrop: expected weights to name parameters of Linear, but got 'kernel'. "
            "Pick from ['bias', 'weight']."
        ),
    ):
        dn.WeightDrop(nn.Linear(2, 2), weights=["kernel"])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "WeightDrop: expected an nn.Linear, LSTM, GRU or RNN, or explicit weights=[...] names, "
            "but got 'Conv2d'. Pass weights=['weight'] (the parameter names to drop)."
        ),
    ):
        dn.WeightDrop(nn.Conv2d(1, 1, 1))


def test_concrete_arguments():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "ConcreteDropout: expected temperature > 0, but got 0. Use a temperature such as 0.1."
        ),
    ):
        dn.ConcreteDropout(nn.Linear(2, 2), temperature=0)
    with pytest.raises(
        TypeError,
        match=re.escape(
            "concrete_dropout: expected p_logit to be a tensor logit(p), but got 0.5. "
            "Pass torch.tensor(math.log(p / (1 - p))) or use ConcreteDropout."
        ),
    ):
        DF.concrete_dropout(torch.ones(2), 0.5)


def test_depth_and_layer_counts():
    with pytest.raises(
        ValueError,
        match=re.escape("drop_path_rates: expected depth >= 1, but got 0. Pass an int >= 1."),
    ):
        DF.drop_path_rates(0.1, 0)
    with pytest.raises(
        TypeError,
        match=re.escape(
            "layer_drop: expected num_layers to be an int, but got 2.0. Pass an int >= 0."
        ),
    ):
        DF.layer_drop(2.0, 0.1)


# --- one calling convention: inplace and generator keyword-only ---------------------


@pytest.mark.parametrize("name", DF.__all__)
def test_inplace_and_generator_are_keyword_only(name: str) -> None:
    import inspect

    params = inspect.signature(getattr(DF, name)).parameters
    for option in ("inplace", "generator"):
        if option in params:
            assert params[option].kind is inspect.Parameter.KEYWORD_ONLY, (name, option)


def test_positional_generator_is_a_type_error() -> None:
    x, g = torch.ones(8, 4), torch.Generator().manual_seed(0)
    # torch's F.dropout(x, p, training, inplace) order would bind g to inplace
    with pytest.raises(TypeError, match=r"takes from 1 to 3 positional arguments but 4"):
        DF.dropout(x, 0.1, True, g)  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"takes from 1 to 4 positional arguments but 5"):
        DF.drop_path(x, 0.1, True, True, g)  # type: ignore[misc]
    a = DF.dropout(x, 0.5, True, generator=torch.Generator().manual_seed(0))
    b = DF.dropout(x.clone(), 0.5, True, inplace=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    c = DF.drop_path(x, 0.5, True, True, generator=torch.Generator().manual_seed(0))
    d = DF.drop_path(
        x.clone(), 0.5, True, True, inplace=True, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(c, d)

"""fast_dropout: swapping torch.nn.Dropout for dropkit.nn.Dropout in place."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import dropkit
from dropkit.swap import fast_dropout


def _net() -> nn.Module:
    shared = nn.Dropout(0.3)
    net = nn.Sequential(
        nn.Linear(8, 16),
        nn.Dropout(0.1, inplace=True),
        nn.Sequential(nn.ReLU(), shared, nn.Linear(16, 16), shared),
        nn.ModuleList([nn.Dropout(1.0), nn.Dropout2d(0.2)]),
        nn.Linear(16, 4),
    )
    net[2][1].eval()  # a module left in eval mode stays in eval mode
    return net


def test_swaps_every_exact_nn_dropout() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert fast_dropout(net) == 3  # the shared module counts once
    assert isinstance(net[1], dropkit.nn.Dropout)
    assert (net[1].p, net[1].inplace, net[1].training) == (0.1, True, True)
    assert net[2][1] is net[2][3]  # still shared
    assert (net[2][1].p, net[2][1].training) == (0.3, False)
    assert net[3][0].p == 1.0
    assert type(net[3][1]) is nn.Dropout2d  # channel dropout is a different op
    after = net.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert fast_dropout(net) == 0  # idempotent


def test_state_dict_loads_both_ways() -> None:
    torch.manual_seed(0)
    stock = _net()
    fast = _net()
    fast_dropout(fast)
    fast.load_state_dict(stock.state_dict(), strict=True)
    stock.load_state_dict(fast.state_dict(), strict=True)
    x = torch.randn(5, 8)
    run = [stock[0], stock[1], stock[2], stock[4]], [fast[0], fast[1], fast[2], fast[4]]
    outs = [nn.Sequential(*mods).eval()(x) for mods in run]
    assert torch.equal(outs[0], outs[1])


def test_training_forward_uses_the_kernel() -> None:
    net = nn.Sequential(nn.Dropout(0.5))
    wrapper = nn.Sequential(net)
    fast_dropout(wrapper)
    y = wrapper(torch.ones(4000))
    assert set(y.unique().tolist()) == {0.0, 2.0}


def test_hugging_face_bert_keeps_attention_rate() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        attention_probs_dropout_prob=0.25,
    )
    model = transformers.BertModel(config)
    stock = sum(type(m) is nn.Dropout for m in model.modules())
    assert fast_dropout(model) == stock == 1 + 3 * config.num_hidden_layers
    att = model.encoder.layer[0].attention.self
    assert isinstance(att.dropout, dropkit.nn.Dropout) and att.dropout.p == 0.25
    out = model(input_ids=torch.randint(0, 50, (2, 7))).last_hidden_state
    out.sum().backward()


def test_invalid_arguments() -> None:
    with pytest.raises(
        TypeError, match=r"fast_dropout: expected model to be a torch.nn.Module, but got 'dict'"
    ):
        fast_dropout({})
    msg = (
        r"fast_dropout: expected a model that contains nn.Dropout modules, but got "
        r"Dropout\(p=0.5, inplace=False\)\. Use dropkit.nn.Dropout"
    )
    with pytest.raises(ValueError, match=msg):
        fast_dropout(nn.Dropout())


def _headed() -> nn.Module:
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)) for _ in range(3))
    return nn.ModuleDict({"blocks": blocks, "head": nn.Dropout(0.2), "spatial": nn.Dropout2d()})


def _swapped(net: nn.Module) -> list[str]:
    return [n for n, m in net.named_modules() if isinstance(m, dropkit.nn.Dropout)]


@pytest.mark.parametrize(
    ("sites", "paths"),
    [
        ("head", ["head"]),
        ("element", ["blocks.0.1", "blocks.1.1", "blocks.2.1", "head"]),
        ("last:1", ["blocks.2.1", "head"]),
        ("blocks:0-0", ["blocks.0.1", "head"]),
        ("blocks.1.*", ["blocks.1.1"]),
        (re.compile(r"^blocks\.[02]"), ["blocks.0.1", "blocks.2.1"]),
        (lambda site: site.depth == 1, ["blocks.1.1"]),
        (["head", "blocks.0.*"], ["blocks.0.1", "head"]),
        ("spatial", []),  # selected, but not an exact nn.Dropout: nothing to swap
    ],
)
def test_sites_limit_the_swap(sites: object, paths: list[str]) -> None:
    net = _headed()
    assert fast_dropout(net, sites=sites) == len(paths)  # type: ignore[arg-type]
    assert _swapped(net) == paths
    assert type(net["spatial"]) is nn.Dropout2d


def test_a_site_object_selects_that_site() -> None:
    net = _headed()
    site = dropkit.find_dropout(net)[1]
    assert fast_dropout(net, sites=[site]) == 1 and _swapped(net) == ["blocks.1.1"]


def test_sites_selecting_nothing_raise_before_any_change() -> None:
    net = _headed()
    with pytest.raises(
        ValueError,
        match=r"fast_dropout: expected sites entry 'decoder\.\*' to select at least one of the "
        r"model's 5 dropout sites, but it selects none\.",
    ):
        fast_dropout(net, sites=["head", "decoder.*"])
    with pytest.raises(TypeError, match="fast_dropout: expected sites to be None, 'head', a kind"):
        fast_dropout(net, sites=3)  # type: ignore[arg-type]
    assert _swapped(net) == []


def test_attention_without_any_framework_model_says_so() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))
    with pytest.raises(
        ValueError,
        match=r"fast_dropout: expected a Hugging Face model with attn_implementation='sdpa' "
        r"for attention=True, but got a Sequential with no Hugging Face model inside\.",
    ):
        fast_dropout(net, attention=True)
    assert _swapped(net) == []


def test_attention_routers_come_from_adapters_of_imported_frameworks(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import sys
    import types

    from dropkit import swap

    (tmp_path / "fake_adapter.py").write_text(
        "from dropkit.swap import register_attention_router\n"
        "ROUTED = []\n"
        "register_attention_router('fakefw', lambda model, caller: [model], ROUTED.extend)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(swap, "_ROUTERS", {})
    monkeypatch.setattr(swap, "ATTENTION_ADAPTERS", {"fakefw": "fake_adapter"})
    net = nn.Sequential(nn.Dropout(0.1))
    with pytest.raises(ValueError, match="with no Hugging Face model inside"):
        fast_dropout(net, attention=True)  # fakefw not imported: its adapter is not loaded
    assert "fake_adapter" not in sys.modules
    monkeypatch.setitem(sys.modules, "fakefw", types.ModuleType("fakefw"))
    assert fast_dropout(net, attention=True) == 1
    assert sys.modules["fake_adapter"].ROUTED == [net]
    monkeypatch.delitem(sys.modules, "fake_adapter")

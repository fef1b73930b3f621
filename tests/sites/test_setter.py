"""set_dropout on plain PyTorch models and custom modules: rates, sites=, rollback."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from dropkit import Dropout, GaussianDropout
from dropkit.sites import DropoutChange, find_dropout, mc_mode, set_dropout
from tests._toy_models import make_net, same_state, state


def test_set_dropout_number_and_sites() -> None:
    net = make_net()
    changes = set_dropout(net, 0.05, sites=["element", "spatial"])
    assert [(c.path, c.attr, c.old, c.new, c.control) for c in changes] == [
        ("1", "p", 0.1, 0.05, "module"),
        ("5.1", "p", 0.4, 0.05, "module"),
    ]
    assert net[1].p == 0.05 and net[5][1].p == 0.05 and net[2][1].p == 0.2
    set_dropout(net, 0.33, sites="3*")
    assert net[3].attn_dropout == 0.33
    set_dropout(net, 0.11, sites=re.compile(r"^2\."))
    assert net[2][1].p == 0.11
    set_dropout(net, 0.12, sites=lambda s: s.kind == "gaussian")
    assert net[4].p == 0.12


def test_set_dropout_mapping_and_depth_function() -> None:
    net = make_net()
    set_dropout(net, {"element": 0.2, "attention": 0.0})
    assert net[1].p == 0.2 and net[3].attn_dropout == 0.0 and net[2][1].p == 0.2  # alpha kept
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)) for _ in range(3))
    set_dropout(blocks, lambda site, depth: 0.3 * depth)
    assert [b[1].p for b in blocks] == pytest.approx([0.0, 0.15, 0.3])


def test_set_dropout_no_op_returns_nothing() -> None:
    net = make_net()
    set_dropout(net, 0.1, sites="element")
    assert set_dropout(net, 0.1, sites="element") == []


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_bad_p_raises_and_model_unchanged(p: float) -> None:
    net = make_net()
    before = state(net)
    with pytest.raises(ValueError, match=r"set_dropout: expected p in \[0, 1\], but got"):
        set_dropout(net, p)
    assert same_state(before, state(net))


def test_p_one_agrees_with_the_layers() -> None:
    # torch.nn.Dropout(1.0) and dropkit.Dropout(1.0) are valid: so is set_dropout(..., 1.0)
    # at such sites; alpha / Gaussian-kind sites refuse it by name, before any change.
    net = make_net()
    before = state(net)
    with pytest.raises(
        ValueError, match=r"set_dropout: expected p in \[0, 1\) at site '2.1' \(AlphaDropout\)"
    ):
        set_dropout(net, 1.0)
    with pytest.raises(ValueError, match=r"at site '4' \(KindDropout\), but got 1.0"):
        set_dropout(net, 1.0, sites="gaussian")
    assert same_state(before, state(net))
    x = torch.randn(3, 8)
    with pytest.raises(ValueError, match=r"\[0, 1\) at site '0' \(GaussianDropout\)"):
        set_dropout(nn.Sequential(GaussianDropout(0.1)), 1.0)
    plain = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.1), Dropout(0.1))
    changes = set_dropout(plain, 1.0)
    assert [(c.path, c.new) for c in changes] == [("1", 1.0), ("2", 1.0)]
    plain.train()
    assert torch.equal(plain(x), torch.zeros(3, 8))
    assert torch.equal(nn.Dropout(1.0)(x), Dropout(1.0)(x))


def test_bad_inputs_raise_and_model_unchanged() -> None:
    net = make_net()
    before = state(net)
    with pytest.raises(ValueError, match="expected a site kind, but got 'bogus'"):
        set_dropout(net, {"element": 0.1, "bogus": 0.2})
    with pytest.raises(ValueError, match=r"expected p\['attention'\] in \[0, 1\]"):
        set_dropout(net, {"element": 0.1, "attention": 2.0})
    with pytest.raises(
        ValueError, match=r"set_dropout \(site '5.1'\): expected p\(site, depth\) in"
    ):
        set_dropout(net, lambda s, d: 0.1 if s.path != "5.1" else 1.5)
    with pytest.raises(TypeError, match="set_dropout: expected p to be a float, but got '0.1'"):
        set_dropout(net, "0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="set_dropout: expected model to be a torch.nn.Module"):
        set_dropout(net.state_dict(), 0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="find_dropout: expected model to be a torch.nn.Module"):
        find_dropout([net])  # type: ignore[arg-type]
    assert same_state(before, state(net))


def test_sites_matching_nothing_warn_and_change_nothing() -> None:
    net = make_net()
    before = state(net)
    with pytest.warns(
        UserWarning,
        match=(
            r"set_dropout: expected sites='decoder\.\*' to select at least one of the "
            r"model's 5 dropout sites, but they select none\. Nothing was changed; list the "
            r"sites with dropkit\.find_dropout\(model\)\.$"
        ),
    ):
        assert set_dropout(net, 0.2, sites="decoder.*") == []
    with pytest.warns(UserWarning, match="select none"):
        set_dropout(net, 0.2, sites="path")
    with pytest.warns(UserWarning, match="sites='atention' to select at least one"):
        set_dropout(net, 0.1, sites="atention")  # not a kind: a glob that matches nothing
    assert same_state(before, state(net))


def test_failed_assignment_rolls_back() -> None:
    class Strict(nn.Dropout):
        def __setattr__(self, name: str, value: object) -> None:
            if name == "p" and value == 0.2 and getattr(self, "armed", False):
                raise RuntimeError("refused")
            super().__setattr__(name, value)

    net = nn.Sequential(nn.Dropout(0.1), Strict(0.1))
    net[1].armed = True
    with pytest.raises(RuntimeError, match="refused"):
        set_dropout(net, 0.2)
    assert net[0].p == 0.1 and net[1].p == 0.1


# -- sites= forms -------------------------------------------------------------------------


def _blocks_net() -> nn.Module:
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)) for _ in range(4))
    return nn.ModuleDict({"emb": nn.Dropout(0.1), "blocks": blocks, "head": nn.Dropout(0.1)})


def _changed(changes: list[DropoutChange]) -> list[str]:
    return [c.path for c in changes]


@pytest.mark.parametrize(
    ("sites", "paths"),
    [
        ("head", ["head"]),
        ("element", ["emb", "blocks.0.1", "blocks.1.1", "blocks.2.1", "blocks.3.1", "head"]),
        ("last:1", ["blocks.3.1", "head"]),
        ("blocks:1-2", ["blocks.1.1", "blocks.2.1", "head"]),
        ("blocks.*", ["blocks.0.1", "blocks.1.1", "blocks.2.1", "blocks.3.1"]),
        (re.compile(r"^blocks\.0"), ["blocks.0.1"]),
        (lambda site: site.depth == 2, ["blocks.2.1"]),
        (["head", "emb", "head"], ["emb", "head"]),  # a union, in module order, once each
    ],
)
def test_every_selector_form_selects_the_same_sites_as_mc_mode(sites: object, paths: list) -> None:
    net = _blocks_net()
    assert [s.path for s in mc_mode(net, sites=sites).enabled] == paths  # type: ignore[arg-type]
    changes = set_dropout(net, 0.3, sites=sites)  # type: ignore[arg-type]
    assert _changed(changes) == paths
    assert all(isinstance(c, DropoutChange) and c.new == 0.3 for c in changes)


def test_a_site_object_selects_that_site() -> None:
    net = _blocks_net()
    site = find_dropout(net)[2]
    assert _changed(set_dropout(net, 0.4, sites=site)) == ["blocks.1.1"]
    assert _changed(set_dropout(net, 0.2, sites=[site, "head"])) == ["blocks.1.1", "head"]
    assert net["blocks"][1][1].p == 0.2


def test_bad_selectors_raise_house_errors_before_any_change() -> None:
    net = _blocks_net()
    before = state(net)
    with pytest.raises(TypeError, match="set_dropout: expected sites to be None, 'head', a kind"):
        set_dropout(net, 0.2, sites=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"set_dropout: expected sites to take 1 positional"):
        set_dropout(net, 0.2, sites=lambda a, b: True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"set_dropout: expected sites='last:k' or 'blocks:i-j'"):
        set_dropout(net, 0.2, sites="last:x")
    with pytest.raises(ValueError, match=r"set_dropout: expected k <= 4 .* but got 'last:9'"):
        set_dropout(net, 0.2, sites="last:9")
    assert same_state(before, state(net))


# -- deprecated kinds= / where= -----------------------------------------------------------


def test_kinds_alias_warns_and_selects_like_sites() -> None:
    a, b = make_net(), make_net()
    with pytest.warns(DeprecationWarning, match=r"set_dropout: kinds= is deprecated; use sites="):
        old = set_dropout(a, 0.05, kinds=["element", "spatial"])
    assert old == set_dropout(b, 0.05, sites=["element", "spatial"])
    assert state(a)[1:] == state(b)[1:]  # flags and rates (weights are random)


def test_where_alias_warns_and_selects_like_sites() -> None:
    a, b = make_net(), make_net()
    with pytest.warns(DeprecationWarning, match=r"set_dropout: where= is deprecated; use sites="):
        old = set_dropout(a, 0.33, where="3*")
    assert old == set_dropout(b, 0.33, sites="3*")
    assert state(a)[1:] == state(b)[1:]  # flags and rates (weights are random)


def test_kinds_and_where_together_select_their_intersection() -> None:
    net = make_net()
    with pytest.warns(DeprecationWarning, match=r"kinds= and where= are deprecated"):
        changes = set_dropout(net, 0.05, kinds=["element", "spatial"], where="5*")
    assert [c.path for c in changes] == ["5.1"]  # '1' is an element site, but not under 5
    with (
        pytest.warns(DeprecationWarning),
        pytest.warns(
            UserWarning,
            match=r"set_dropout: expected where='decoder\.\*' and kinds=None to select at least "
            r"one of the model's 5 dropout sites, but they select none\.",
        ),
    ):
        assert set_dropout(net, 0.2, where="decoder.*") == []


def test_sites_with_an_alias_is_a_type_error() -> None:
    net = make_net()
    before = state(net)
    with pytest.raises(
        TypeError,
        match=(
            r"set_dropout: expected sites= alone, but got sites='head' together with "
            r"kinds='element'\. kinds= and where= are deprecated aliases of sites=: pass only "
            r"sites= \(a list selects the union"
        ),
    ):
        set_dropout(net, 0.2, sites="head", kinds="element")
    with pytest.raises(TypeError, match=r"sites='head' together with where='1'\."):
        set_dropout(net, 0.2, sites="head", where="1")
    assert same_state(before, state(net))


def test_alias_values_are_checked_with_their_own_messages() -> None:
    net = make_net()
    with pytest.raises(
        ValueError,
        match="set_dropout: expected a site kind, but got 'atention'. Known kinds: element",
    ):
        set_dropout(net, 0.1, kinds="atention")


class _Config:
    """A config that follows the Hugging Face convention (to_dict, dropout fields)."""

    refuse: object = None  # a value whose assignment fails (the measurement uses others)

    def __init__(self, hidden_dropout: float = 0.1) -> None:
        self.hidden_dropout = hidden_dropout

    def to_dict(self) -> dict[str, float]:
        return {"hidden_dropout": self.hidden_dropout}

    def __setattr__(self, name: str, value: object) -> None:
        if value == type(self).refuse:
            raise RuntimeError("config refused")
        super().__setattr__(name, value)


class _Pretrained(nn.Module):
    """What set_dropout reads as a PreTrainedModel, without transformers."""

    def __init__(self, config: _Config) -> None:
        super().__init__()
        self.config = config
        self.drop = nn.Dropout(config.hidden_dropout)

    def save_pretrained(self, path: str) -> None:  # the convention, not used here
        raise NotImplementedError


def test_config_follows_the_sites_and_a_failing_config_write_rolls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _Pretrained(_Config())
    changes = set_dropout(model, 0.3, sites="drop")
    assert [(c.path, c.attr, c.control, c.new) for c in changes] == [
        ("drop", "p", "module", 0.3),
        ("", "hidden_dropout", "config", 0.3),
    ]
    monkeypatch.setattr(_Config, "refuse", 0.4)
    with pytest.raises(RuntimeError, match="config refused"):
        set_dropout(model, 0.4)
    assert model.drop.p == 0.3 and model.config.hidden_dropout == 0.3  # the live rate came back

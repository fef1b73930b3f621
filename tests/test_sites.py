"""find_dropout / set_dropout on plain PyTorch models and custom modules."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from _toy_models import make_net, same_state, state
from dropkit import Dropout, GaussianDropout
from dropkit._validation import check_p
from dropkit.sites import KINDS, DropoutSite, find_dropout, set_dropout


def test_finds_modules_attributes_and_kinds() -> None:
    net = make_net()
    got = [(s.path, s.kind, s.p, s.control, s.attr) for s in find_dropout(net)]
    assert got == [
        ("1", "element", 0.1, "module", "p"),
        ("2.1", "alpha", 0.2, "module", "p"),
        ("3", "attention", 0.25, "attribute", "attn_dropout"),
        ("4", "gaussian", 0.3, "module", "p"),
        ("5.1", "spatial", 0.4, "module", "p"),
    ]
    assert all(s.active for s in find_dropout(net))
    net.eval()
    assert not any(s.active for s in find_dropout(net))


def test_site_fields_and_equality() -> None:
    net = make_net()
    a, b = find_dropout(net), find_dropout(net)
    assert a == b
    site = a[2]
    assert site.module is net[3] and site.gates == (net[3],) and site.gate_paths == ("3",)
    assert site.name == "3.attn_dropout"
    assert "module=" not in repr(site)
    with pytest.raises(AttributeError):
        site.p = 0.5  # type: ignore[misc]


def test_probe_finds_functional_calls_and_restores() -> None:
    net = make_net().eval()
    before = state(net)
    sites = find_dropout(net, probe_inputs=torch.randn(3, 8))
    functional = [(s.path, s.kind, s.p, s.active) for s in sites if s.control == "functional"]
    assert functional == [("6", "attention", 0.3, False), ("6", "spatial", 0.15, False)]
    # the Gated module's F.dropout is explained by its attribute site: not duplicated
    assert [s.path for s in sites].count("3") == 1
    assert same_state(before, state(net))


def test_probe_keeps_batchnorm_statistics() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).eval()
    before = state(net)
    find_dropout(net, probe_inputs=(torch.randn(16, 4),))
    assert same_state(before, state(net))


def test_depth_index_and_fraction() -> None:
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)) for _ in range(5))
    net = nn.ModuleDict({"emb": nn.Dropout(0.1), "blocks": blocks, "head": nn.Dropout(0.1)})
    sites = find_dropout(net)
    assert [(s.path, s.depth, s.depth_fraction, s.layer) for s in sites] == [
        ("emb", None, 0.0, None),
        ("blocks.0.1", 0, 0.0, 0),
        ("blocks.1.1", 1, 0.25, 1),
        ("blocks.2.1", 2, 0.5, 2),
        ("blocks.3.1", 3, 0.75, 3),
        ("blocks.4.1", 4, 1.0, 4),
        ("head", None, 1.0, None),
    ]


def test_set_dropout_number_kinds_where() -> None:
    net = make_net()
    changes = set_dropout(net, 0.05, kinds=["element", "spatial"])
    assert [(c.path, c.attr, c.old, c.new, c.control) for c in changes] == [
        ("1", "p", 0.1, 0.05, "module"),
        ("5.1", "p", 0.4, 0.05, "module"),
    ]
    assert net[1].p == 0.05 and net[5][1].p == 0.05 and net[2][1].p == 0.2
    set_dropout(net, 0.33, where="3*")
    assert net[3].attn_dropout == 0.33
    set_dropout(net, 0.11, where=re.compile(r"^2\."))
    assert net[2][1].p == 0.11
    set_dropout(net, 0.12, where=lambda s: s.kind == "gaussian")
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
    set_dropout(net, 0.1, kinds="element")
    assert set_dropout(net, 0.1, kinds="element") == []


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
        set_dropout(net, 1.0, kinds="gaussian")
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
    with pytest.raises(
        ValueError,
        match="set_dropout: expected a site kind, but got 'atention'. Known kinds: element",
    ):
        set_dropout(net, 0.1, kinds="atention")
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


def test_where_matching_nothing_warns_and_changes_nothing() -> None:
    net = make_net()
    before = state(net)
    with pytest.warns(
        UserWarning,
        match="set_dropout: expected where='decoder.*' and kinds=None to select at least one",
    ):
        assert set_dropout(net, 0.2, where="decoder.*") == []
    with pytest.warns(UserWarning, match="select none"):
        set_dropout(net, 0.2, kinds="path")
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


def test_kinds_vocabulary() -> None:
    assert KINDS[:3] == ("element", "spatial", "alpha") and "concrete" in KINDS
    assert check_p("x", DropoutSite("a", "element", 0.1, True, "module").p) == 0.1

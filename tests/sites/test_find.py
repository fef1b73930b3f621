"""find_dropout on plain PyTorch models and custom modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropkit._validation import check_p
from dropkit.sites import KINDS, DropoutSite, find_dropout
from tests._toy_models import make_net, same_state, state


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


def test_kinds_vocabulary() -> None:
    assert KINDS[:3] == ("element", "spatial", "alpha") and "concrete" in KINDS
    assert check_p("x", DropoutSite("a", "element", 0.1, True, "module").p) == 0.1

"""The typed site records: DropoutSite, the finders' RawSite and DropoutChange."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from torch import nn

import dropkit
from dropkit.sites import DropoutChange, DropoutSite, find_dropout, set_dropout
from dropkit.sites.discover import raw_static_sites, static_sites, with_depth
from dropkit.sites.record import RawSite
from tests._toy_models import make_net


def test_raw_sites_are_named_records_that_rebuild_the_sites() -> None:
    net = make_net()
    raw = raw_static_sites(net)
    assert all(isinstance(r, RawSite) for r in raw)
    assert [f.name for f in dataclasses.fields(RawSite)] == [
        "path",
        "kind",
        "p",
        "active",
        "control",
        "attr",
        "gates",
    ]
    assert with_depth(net, raw) == static_sites(net) == find_dropout(net, config=False)
    sites = find_dropout(net)
    assert [s.raw() for s in sites] == raw  # raw() drops exactly the depth fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        raw[0].p = 0.5  # type: ignore[misc]


def test_probe_reports_raw_records() -> None:
    import torch

    from dropkit.sites.probe import probe_functional

    net = make_net().eval()
    found = probe_functional(net, torch.randn(2, 8), static_sites(net))
    assert [(r.path, r.kind, r.control, r.attr) for r in found] == [
        ("6", "attention", "functional", None),
        ("6", "spatial", "functional", None),
    ]
    assert all(isinstance(r, RawSite) and r.gates == (net[6],) for r in found)


def test_set_dropout_returns_typed_changes() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))
    (change,) = set_dropout(net, 0.2)
    assert change == DropoutChange("1", "p", "element", "module", 0.1, 0.2)
    hints = typing.get_type_hints(set_dropout)
    assert hints["return"] == list[DropoutChange]
    assert typing.get_type_hints(DropoutChange)["old"] == float | None


def test_public_types_are_exported() -> None:
    for name in ("DropoutChange", "MCMode", "GuardHandle", "DropoutSite"):
        assert name in dropkit.__all__ and getattr(dropkit, name) is getattr(dropkit.sites, name)
    assert dropkit.sites.SiteSelector is dropkit.sites.select.SiteSelector
    assert DropoutSite("a", "element", 0.1, True, "module").name == "a"

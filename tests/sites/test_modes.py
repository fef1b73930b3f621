"""mc_mode and guard on plain PyTorch models."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from dropkit.sites import DropoutActiveWarning, find_dropout, guard, mc_mode, set_dropout
from tests._toy_models import Custom, Gated, make_net, same_state, state


def bn_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 8), Gated()
    ).eval()


def test_mc_mode_flips_only_dropout_and_restores(seed: int) -> None:
    net = bn_net()
    x = torch.randn(16, 6)
    before = state(net)
    with torch.no_grad():
        ref = net(x)
        with mc_mode(net) as handle:
            assert [s.name for s in handle.enabled] == ["3", "5.attn_dropout"]
            assert net[3].training and net[5].training
            assert not net.training and not net[1].training and not net[0].training
            outs = [net(x) for _ in range(20)]
        after = net(x)
    assert not torch.equal(outs[0], outs[1])
    assert torch.equal(ref, after)
    assert same_state(before, state(net))


def test_plain_call_restore_and_exception() -> None:
    net = bn_net()
    net[0].train()  # an unusual mix of flags must come back exactly
    flags = [m.training for m in net.modules()]
    handle = mc_mode(net)
    assert net[3].training
    handle.restore()
    handle.restore()  # idempotent
    assert [m.training for m in net.modules()] == flags
    with pytest.raises(KeyError):
        with mc_mode(net):
            raise KeyError("boom")
    assert [m.training for m in net.modules()] == flags


def test_nesting_restores_each_level() -> None:
    net = bn_net()
    with mc_mode(net, sites="element") as outer:
        assert [s.name for s in outer.enabled] == ["3"]
        assert net[3].training and not net[5].training
        with mc_mode(net, sites="attention"):
            assert net[3].training and net[5].training
        assert net[3].training and not net[5].training
    assert not any(m.training for m in net.modules())


def test_site_selection_forms() -> None:
    net = make_net().eval()
    assert [s.name for s in mc_mode(net, sites="2*").enabled] == ["2.1"]
    net.eval()
    picked = find_dropout(net)[3]
    with mc_mode(net, sites=[picked, "spatial"]) as handle:
        assert [s.name for s in handle.enabled] == ["4", "5.1"]
    with mc_mode(net, sites=lambda s: s.p >= 0.3) as handle:
        assert [s.name for s in handle.enabled] == ["4", "5.1"]


def test_functional_sites_from_probe() -> None:
    net = nn.Sequential(nn.Linear(8, 8), Custom()).eval()
    x = torch.randn(4, 8)
    with pytest.raises(RuntimeError, match="mc_mode: expected at least one dropout site"):
        mc_mode(net)
    sites = [s for s in find_dropout(net, probe_inputs=x) if s.control == "functional"]
    with torch.no_grad(), mc_mode(net, sites=sites) as handle:
        assert net[1].training and len(handle.enabled) == 2
        assert not torch.equal(net(x), net(x))
    assert not net[1].training


def test_collateral_rates_are_zeroed_while_open() -> None:
    class TwoRates(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dropout = 0.2
            self.layerdrop = 0.5

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                return x
            return nn.functional.dropout(x, self.dropout, self.training)

    m = TwoRates().eval()
    m.gradient_checkpointing = True
    with mc_mode(m, sites="element"):
        assert m.training and m.layerdrop == 0.0 and m.dropout == 0.2
        assert m.gradient_checkpointing is False
    assert m.layerdrop == 0.5 and m.gradient_checkpointing is True and not m.training


def test_nothing_stochastic_raises() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with pytest.raises(RuntimeError, match=r"dropkit.set_dropout\(model, 0.1\)"):
        mc_mode(net)
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0))
    with pytest.raises(RuntimeError, match="got 1 selected sites, none stochastic"):
        mc_mode(net)


def test_bad_sites_raise() -> None:
    net = make_net().eval()
    before = state(net)
    with pytest.raises(ValueError, match="mc_mode: expected sites entry 'decoder.*' to select"):
        mc_mode(net, sites="decoder.*")
    with pytest.raises(TypeError, match="mc_mode: expected sites to be None, 'head'"):
        mc_mode(net, sites=[3])
    with pytest.raises(TypeError, match="mc_mode: expected model to be a torch.nn.Module"):
        mc_mode("net")  # type: ignore[arg-type]
    assert same_state(before, state(net))


def test_head_selection_for_plain_models() -> None:
    net = nn.Sequential()
    net.add_module("body", nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))
    net.add_module("head_drop", nn.Dropout(0.2))
    net.add_module("head", nn.Linear(2, 2))
    net.eval()
    with mc_mode(net, sites="head") as handle:
        assert [s.name for s in handle.enabled] == ["head_drop"]
        assert not net.body[1].training


def test_guard_warns_once_on_forgotten_eval() -> None:
    net = bn_net()
    handle = guard(net)
    x = torch.randn(4, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            net(x)  # eval: silent
            with mc_mode(net):
                net(x)  # MC: silent
        net.train()
        net(x)  # training with gradients: silent
    with torch.no_grad(), pytest.warns(DropoutActiveWarning, match="guard: expected dropout off"):
        net(x)
    assert handle.warned
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.inference_mode():
            net(x)  # once per model
    handle.remove()


def test_guard_inference_mode_and_remove() -> None:
    net = bn_net().train()
    handle = guard(net)
    with torch.inference_mode(), pytest.warns(DropoutActiveWarning, match="Call model.eval()"):
        net(torch.randn(4, 6))
    net = bn_net().train()
    handle = guard(net)
    handle.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            net(torch.randn(4, 6))
    with pytest.raises(TypeError, match="guard: expected model to be a torch.nn.Module"):
        guard(None)  # type: ignore[arg-type]


def test_guard_silent_when_rates_are_zero() -> None:
    net = bn_net().train()
    set_dropout(net, 0.0)
    guard(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            net(torch.randn(4, 6))


def test_guard_warning_points_at_the_callers_line() -> None:
    net = bn_net().train()
    guard(net)
    with torch.no_grad(), pytest.warns(DropoutActiveWarning) as record:
        net(torch.randn(4, 6))
    assert record[0].filename == __file__

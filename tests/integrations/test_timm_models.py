"""find_dropout / set_dropout / mc_mode on timm models (random weights, tiny inputs)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from dropkit.sites import DropoutActiveWarning, find_dropout, guard, mc_mode, set_dropout
from tests._rate_meter import RateMeter, within

timm = pytest.importorskip("timm")


def vit(**rates: float) -> nn.Module:
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, **rates
    ).eval()


def drop_path_counts(model: nn.Module, x: torch.Tensor, forwards: int) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    hooks = []
    for path, module in model.named_modules():
        if type(module).__name__ == "DropPath":
            counts[path] = [0, 0]

            def hook(mod: nn.Module, args: Any, out: torch.Tensor, path: str = path) -> None:
                live = args[0].flatten(1).ne(0).any(1)
                counts[path][0] += int(live.sum())
                counts[path][1] += int((live & out.flatten(1).eq(0).all(1)).sum())

            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        for _ in range(forwards):
            model(x)
    for h in hooks:
        h.remove()
    return counts


def test_vit_sites() -> None:
    model = vit(drop_rate=0.1, attn_drop_rate=0.2, drop_path_rate=0.3)
    sites = {s.name: s for s in find_dropout(model)}
    attn = sites["blocks.0.attn.attn_drop"]
    assert attn.kind == "attention" and attn.gate_paths == (
        "blocks.0.attn",
        "blocks.0.attn.attn_drop",
    )
    assert (
        sites["blocks.1.drop_path1"].kind == "path"
        and sites["blocks.1.drop_path1"].attr == "drop_prob"
    )
    assert sites["blocks.1.attn.proj_drop"].kind == "element"
    assert sites["head_drop"].p == pytest.approx(0.1)


@pytest.mark.parametrize("fused", [True, False])
def test_vit_rates_under_mc_mode(fused: bool, seed: int) -> None:
    model = vit(drop_path_rate=0.1)
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused
    changes = set_dropout(model, {"element": 0.2, "attention": 0.3, "path": 0.25})
    assert {c.control for c in changes} == {"module"}  # timm models have no config to keep
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    meter = RateMeter()
    with torch.no_grad(), mc_mode(model) as handle, meter:
        assert {s.kind for s in handle.enabled} == {"element", "attention", "path"}
        outs = [model(x) for _ in range(3)]
    assert not torch.equal(outs[0], outs[1])
    if fused:
        assert set(meter.sdpa_p) == {0.3}
        assert set(meter.counts) == {0.2}
    else:
        assert not meter.sdpa_p and set(meter.counts) == {0.2, 0.3}
    for p, (n, dropped) in meter.counts.items():
        assert n > 1000 and within(dropped, n, p), (p, n, dropped)
    with mc_mode(model, sites="path"):
        counts = drop_path_counts(model, x, forwards=20)
    assert set(counts) == {"blocks.1.drop_path1", "blocks.1.drop_path2"}  # block 0: rate 0
    for path, (n, dropped) in counts.items():
        assert n == 160 and within(dropped, n, 0.25), (path, dropped)
    with torch.no_grad():
        assert torch.equal(model(x), ref)


def test_vit_attention_only(seed: int) -> None:
    model = vit()
    set_dropout(model, 0.2, sites="attention")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), mc_mode(model, sites="attention"):
        assert not torch.equal(model(x), model(x))
        assert not model.blocks[0].mlp.drop1.training and not model.blocks[0].norm1.training


def test_resnet_batchnorm_untouched_by_100_mc_forwards(seed: int) -> None:
    """Known failure 2: model.train() for MC dropout rewrites BatchNorm statistics."""
    model = timm.create_model("resnet18", pretrained=False, drop_rate=0.25, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    # give the statistics non-trivial values first
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    model.eval()
    stats = {
        k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k
    }
    assert len(stats) == 3 * 20 and int(stats["bn1.num_batches_tracked"]) == 1
    sites = find_dropout(model)
    assert [(s.name, s.kind, s.control) for s in sites] == [("drop_rate", "element", "attribute")]
    with torch.no_grad():
        ref = model(x)
        with mc_mode(model, sites="head") as handle:
            assert [s.name for s in handle.enabled] == ["drop_rate"]
            assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
            outs = torch.stack([model(x) for _ in range(100)])
        assert torch.equal(model(x), ref)
    assert outs.std(0).max() > 0
    now = model.state_dict()
    for key, value in stats.items():
        assert torch.equal(now[key], value), key
    # the usual recipe, for contrast: train() moves the statistics
    model.train()
    with torch.no_grad():
        model(x)
    assert not torch.equal(model.state_dict()["bn1.running_mean"], stats["bn1.running_mean"])


def test_guard_on_timm(seed: int) -> None:
    model = vit(drop_rate=0.1)
    handle = guard(model)
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            model(x)
            with mc_mode(model):
                model(x)
    model.train()
    with torch.no_grad(), pytest.warns(DropoutActiveWarning, match="head_drop"):
        model(x)
    handle.remove()

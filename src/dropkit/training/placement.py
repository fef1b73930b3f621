"""Placement checks: dropout right before BatchNorm, and dropout left at zero.

Dropout feeding BatchNorm directly causes a *variance shift*: during training
BatchNorm normalises activations whose variance dropout has inflated (by
``1 / (1 - p)`` for the kept units), but at evaluation dropout is off, the
variance is smaller, and the running statistics no longer match. The usual
fix is to put dropout after the last BatchNorm (or before a linear layer).

Two ways to find it:

* **Static** (always): walk every ``nn.Sequential`` (nested ones flattened in
  execution order) and flag a dropout module immediately followed by a
  BatchNorm module.
* **Probe** (with ``example_inputs``): one forward pass under
  ``torch.no_grad`` with hooks that record which tensor each dropout module
  returned; a BatchNorm whose input *is* such a tensor is fed directly by
  dropout, whatever the ``forward`` code looks like. Dropout modules run in
  training mode and everything else in eval mode, so BatchNorm statistics
  are not updated; the random-number state, training flags and buffers are
  restored afterwards. ``F.dropout`` calls inside ``forward`` are invisible
  to module hooks and are not checked.

A model in training mode whose every dropout site has rate 0 gets a warning
too: dropout is silently off (a common leftover of ``set_dropout(model, 0)``
or a config default).

References:
    Li et al., "Understanding the Disharmony between Dropout and Batch
    Normalization by Variance Shift", CVPR 2019.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, TypeAlias

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from dropkit._call import call_model
from dropkit._validation import check_bool, check_module

#: What a probe forward accepts: a tensor, a tuple of positional inputs or a
#: mapping of keyword inputs (tokenizer output), as ``dropkit._call.call_model``.
ModelInputs: TypeAlias = torch.Tensor | tuple[object, ...] | Mapping[str, object]

__all__ = ["PlacementWarning", "check_placement"]


class PlacementWarning(UserWarning):
    """A dropout layer sits where it hurts, or is switched off by its rate."""


def _is_dropout(module: nn.Module) -> bool:
    from dropkit.nn._base import DropoutBase

    return isinstance(module, (_DropoutNd, nn.AlphaDropout, DropoutBase))


def _flatten(seq: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in seq.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            out.extend(_flatten(child, path))
        else:
            out.append((path, child))
    return out


def _static_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for path, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        leaves = _flatten(module, path)
        for (a_path, a), (b_path, b) in zip(leaves, leaves[1:]):
            if _is_dropout(a) and isinstance(b, _BatchNorm) and (a_path, b_path) not in seen:
                seen.add((a_path, b_path))
                pairs.append((a_path, b_path))
    return pairs


def _probe_pairs(model: nn.Module, inputs: Any) -> list[tuple[str, str]]:
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []

    def after_dropout(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            # Keep the tensor alive so its id cannot be reused during the probe.
            produced[id(output)] = (names[module], output)

    def before_bn(module: nn.Module, args: Any) -> None:
        if args and isinstance(args[0], torch.Tensor) and id(args[0]) in produced:
            pair = (produced[id(args[0])][0], names[module])
            if pair not in pairs:
                pairs.append(pair)

    modes = {m: m.training for m in model.modules()}
    buffers = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    handles = []
    try:
        for module in model.modules():
            if _is_dropout(module):
                handles.append(module.register_forward_hook(after_dropout))
            elif isinstance(module, _BatchNorm):
                handles.append(module.register_forward_pre_hook(before_bn))
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for module in model.modules():
                module.training = _is_dropout(module)
            call_model(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in buffers and not torch.equal(buf, buffers[name]):
                    buf.copy_(buffers[name])
    return pairs


def _all_zero(model: nn.Module) -> bool:
    try:
        from dropkit.sites import find_dropout

        rates = [s.p for s in find_dropout(model) if s.control != "functional"]
    except ImportError:  # pragma: no cover - sites is part of the package
        rates = [float(getattr(m, "p", 0.0)) for m in model.modules() if _is_dropout(m)]
    return bool(rates) and all(r == 0.0 for r in rates)


def check_placement(
    model: nn.Module, example_inputs: ModelInputs | None = None, *, warn: bool = True
) -> list[PlacementWarning]:
    """Check where dropout sits in ``model`` and whether it is switched off.

    Args:
        model: Any module.
        example_inputs: Optional inputs for a probe forward (a tensor, a tuple of
            positional arguments or a mapping of keyword arguments), which finds
            dropout -> BatchNorm links inside arbitrary ``forward`` code.
        warn: Also emit each finding with ``warnings.warn``.

    Returns:
        The findings as :class:`PlacementWarning` objects (empty if none).

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.BatchNorm1d(4))
        >>> [str(w).split(":")[0] for w in check_placement(net, warn=False)]
        ['check_placement']
    """
    check_module("check_placement", model)
    check_bool("check_placement", warn, "warn")
    pairs = _static_pairs(model)
    if example_inputs is not None:
        pairs += [pair for pair in _probe_pairs(model, example_inputs) if pair not in pairs]
    found = [
        PlacementWarning(
            f"check_placement: dropout {a!r} feeds BatchNorm {b!r} directly; BatchNorm's "
            "running variance is then measured with dropout on and is wrong at eval "
            "(variance shift). Move the dropout after the BatchNorm, or before a linear layer."
        )
        for a, b in pairs
    ]
    if model.training and _all_zero(model):
        found.append(
            PlacementWarning(
                "check_placement: the model is in training mode but every dropout rate is 0, so "
                "dropout is off. Set a rate with dropkit.set_dropout(model, 0.1), or remove the "
                "dropout layers if this is intended."
            )
        )
    if warn:
        for finding in found:
            warnings.warn(finding, stacklevel=2)
    return found

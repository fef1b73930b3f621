"""Find every dropout site of any model, Hugging Face and timm included.

``find_dropout`` reports each place where a model can drop at random (a
:class:`~dropkit.sites.record.DropoutSite`): dropout modules, rates read from a
child by its parent's fused attention, float rate attributes read at forward
time (all by inspection, :mod:`dropkit.sites.discover`), custom modules that
call ``F.dropout`` or ``scaled_dot_product_attention(dropout_p=...)``
themselves (with a probe forward, :mod:`dropkit.sites.probe`), and Hugging Face
config fields that would build sites the live model lacks
(:mod:`dropkit.sites.hf_config`).

References:
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 2014.
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import torch
from torch import nn

from dropkit._validation import check_bool, check_module
from dropkit.sites.discover import static_sites, with_depth
from dropkit.sites.hf_config import config_sites
from dropkit.sites.probe import probe_functional
from dropkit.sites.record import DropoutSite, RawSite

__all__ = ["find_dropout", "ProbeInputs"]

#: Inputs of one probe forward: a tensor (``model(x)``), a tuple of positional
#: arguments (``model(*args)``) or a mapping of keyword arguments (``model(**kw)``).
ProbeInputs: TypeAlias = torch.Tensor | tuple[Any, ...] | Mapping[str, Any]


def find_dropout(
    model: nn.Module, *, probe_inputs: ProbeInputs | None = None, config: bool = True
) -> list[DropoutSite]:
    """List every dropout site of ``model``, in module order.

    Modules and float attributes are found by inspection (no forward). With
    ``probe_inputs``, one extra forward under a ``TorchFunctionMode`` observes
    dropout-like calls (``F.dropout*``, ``F.alpha_dropout``,
    ``scaled_dot_product_attention`` with ``dropout_p > 0``) made by custom
    modules and adds them as ``control="functional"`` sites, attributed to the
    innermost module running. The probe forward runs under ``torch.no_grad``
    with dropout sites switched on, BatchNorm kept in eval, and every buffer and
    training flag restored afterwards.

    For Hugging Face models, config fields that would build sites the live
    model lacks (ConvNeXt loaded with ``drop_path_rate=0`` has ``nn.Identity``
    where ``DropPath`` would be) are reported as ``control="config"`` sites with
    ``attr`` = the field: ``set_dropout`` cannot switch them on live, the model
    must be rebuilt with that field.

    Args:
        model: Any module.
        probe_inputs: Optional inputs for the probe forward: a tensor, a tuple of
            positional arguments, or a mapping of keyword arguments (Hugging Face
            ``input_ids=...``). A probed call whose rate equals exactly one float
            attribute that the calling class reads (``F.dropout(x, self.rate,
            self.training)``) is reported as that attribute
            (``control="attribute"``, settable); otherwise as ``"functional"``.
        config: Whether to report config-only sites (builds the model class on
            the ``meta`` device once per dropout-like config field).

    Returns:
        The sites, one per rate (a BERT attention layer gives one ``attention``
        site for its ``dropout`` child, whose rate the fused attention reads).

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or ``config`` not a bool.
        Exception: What the probe forward raised, of the same type, its message
            starting with ``find_dropout: ... while probing with probe_inputs``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2))
        >>> [(s.path, s.kind, s.p, s.active) for s in find_dropout(net)]
        [('1', 'element', 0.2, True)]
    """
    check_module("find_dropout", model)
    check_bool("find_dropout", config, "config")
    sites = static_sites(model)
    extra: list[RawSite] = []
    if probe_inputs is not None:
        extra += probe_functional(model, probe_inputs, sites)
    if config:
        extra += config_sites(model)
    if extra:
        sites = with_depth(model, [s.raw() for s in sites] + extra)
    return sites

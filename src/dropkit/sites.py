"""Find and set every dropout site of any model, Hugging Face and timm included.

``find_dropout`` reports each place where a model can drop at random (a
:class:`DropoutSite`): dropout modules, rates read from a child by its parent's
fused attention, float rate attributes read at forward time, and (with a probe
forward) custom modules that call ``F.dropout`` or
``scaled_dot_product_attention(dropout_p=...)`` themselves. ``set_dropout``
changes the rates of the live model and of its Hugging Face ``config`` together,
so ``save_pretrained`` / ``from_pretrained`` rebuilds the same rates.

References:
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 2014.
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from dropkit._discover import (
    KINDS,
    attribute_kind,
    child_kind,
    module_rate,
    parent_reads_child_p,
    rate_attributes,
)
from dropkit._validation import check_bool, check_callable, check_module

__all__ = ["DropoutSite", "find_dropout", "set_dropout", "KINDS"]

_INT = re.compile(r"^\d+$")


@dataclass(frozen=True)
class DropoutSite:
    """One place where a model can drop at random.

    Attributes:
        path: Dotted module path (``""`` for the root) of the module that holds
            the rate (``control="module"`` / ``"attribute"``), or of the module
            that made the call (``"functional"``).
        kind: Site kind from the shared vocabulary (``element``, ``attention``,
            ``spatial``, ``path``, ``layer``, ...).
        p: Current drop probability.
        active: Whether the site would drop in the model's current mode.
        control: How the rate is controlled: ``"module"`` (a dropout module's
            rate attribute), ``"attribute"`` (a float attribute read at forward
            time), ``"config"`` (a config field only) or ``"functional"`` (a call
            seen by the probe, with no knob to set).
        attr: Name of the rate attribute (``p``, ``drop_prob``,
            ``attention_dropout``, ...) or, for config sites, the config field;
            None for functional sites.
        gate_paths: Paths of the modules whose ``training`` flag switches the
            site; the first one is the flag that decides ``active``.
        depth: Ordinal of the block holding the site among the blocks that hold
            sites (block = path up to its last integer component, the site's
            own name excluded), None outside blocks.
        depth_fraction: ``depth / (blocks - 1)`` in ``[0, 1]``; 0 before the
            first block (embeddings), 1 after the last one (heads).
        layer: Last integer component of the block path (the layer index), or None.
        module: The module holding the rate (not compared, not shown).
        gates: The modules named by ``gate_paths`` (not compared, not shown).
    """

    path: str
    kind: str
    p: float
    active: bool
    control: str
    attr: str | None = None
    gate_paths: tuple[str, ...] = ()
    depth: int | None = None
    depth_fraction: float = 0.0
    layer: int | None = None
    module: nn.Module | None = field(default=None, compare=False, repr=False)
    gates: tuple[nn.Module, ...] = field(default=(), compare=False, repr=False)

    @property
    def name(self) -> str:
        """Unique name of the site in its model.

        ``path.attr`` for attribute sites, ``path[kind]`` for functional sites,
        else ``path``.
        """
        if self.control == "attribute" and self.attr:
            return f"{self.path}.{self.attr}" if self.path else self.attr
        if self.control == "functional":
            return f"{self.path}[{self.kind}]"
        return self.path


def find_dropout(
    model: nn.Module, *, probe_inputs: Any = None, config: bool = True
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
    sites = _static_sites(model)
    extra: list[tuple] = []
    if probe_inputs is not None:
        from dropkit._probe import probe_functional

        extra += probe_functional(model, probe_inputs, sites)
    if config:
        from dropkit.integrations.hf import config_sites

        extra += config_sites(model)
    if extra:
        sites = _with_depth(model, [_strip_depth(s) for s in sites] + extra)
    return sites


def _strip_depth(site: DropoutSite) -> tuple[str, str, float, bool, str, str | None, tuple]:
    return (site.path, site.kind, site.p, site.active, site.control, site.attr, site.gates)


def _static_sites(model: nn.Module) -> list[DropoutSite]:
    modules = dict(model.named_modules())
    raw: list[tuple[str, str, float, bool, str, str | None, tuple]] = []
    for path, module in modules.items():
        rate = module_rate(module)
        if rate is not None:
            kind, attr = rate
            gates: tuple[nn.Module, ...] = (module,)
            if path:
                parent_path, _, child = path.rpartition(".")
                parent = modules[parent_path]
                if parent_reads_child_p(parent, child):
                    kind = child_kind(parent, child, kind)
                    gates = (parent, module)
            gates = gates + _helpers(module)
            p = float(getattr(module, attr))
            raw.append((path, kind, p, p > 0 and gates[0].training, "module", attr, gates))
        for attr in rate_attributes(module):
            p = float(getattr(module, attr))
            kind = attribute_kind(module, attr)
            raw.append((path, kind, p, p > 0 and module.training, "attribute", attr, (module,)))
    return _with_depth(model, raw)


def _helpers(site: nn.Module) -> tuple[nn.Module, ...]:
    # A dropkit module may delegate to hidden helpers that carry the same ``p``
    # and their own flag (WeightDrop's DropConnect parametrisations).
    if not isinstance(getattr(type(site), "kind", None), str):
        return ()
    return tuple(
        m
        for m in site.modules()
        if m is not site
        and getattr(type(m), "kind", None) is None
        and not type(m).__module__.startswith("torch.")
        and getattr(m, "p", None) == getattr(site, "p", None)
    )


def _with_depth(model: nn.Module, raw: list[tuple]) -> list[DropoutSite]:
    paths = {id(m): p for p, m in model.named_modules()}
    order = {p: i for i, (p, _) in enumerate(model.named_modules())}
    raw = sorted(raw, key=lambda r: order.get(r[0], len(order)))
    blocks: list[str] = []
    for row in raw:
        key = _block_key(row[0])
        if key is not None and key not in blocks:
            blocks.append(key)
    index = {b: i for i, b in enumerate(blocks)}
    first = next((i for i, r in enumerate(raw) if _block_key(r[0]) is not None), len(raw))
    sites = []
    for i, (path, kind, p, active, control, attr, gates) in enumerate(raw):
        key = _block_key(path)
        depth = index.get(key) if key is not None else None
        if depth is None:
            fraction = 0.0 if i < first else 1.0
        else:
            fraction = depth / (len(blocks) - 1) if len(blocks) > 1 else 1.0
        ints = [int(c) for c in path.split(".")[:-1] if _INT.match(c)]
        module = None if not gates else gates[-1] if control == "module" else gates[0]
        sites.append(
            DropoutSite(
                path=path,
                kind=kind,
                p=p,
                active=active,
                control=control,
                attr=attr,
                gate_paths=tuple(paths.get(id(g), "?") for g in gates),
                depth=depth,
                depth_fraction=fraction,
                layer=ints[-1] if ints else None,
                module=module,
                gates=gates,
            )
        )
    return sites


def _block_key(path: str) -> str | None:
    # A block is the path up to its last integer component, the site's own name
    # excluded (``blocks.0.1`` is the dropout at index 1 of block 0).
    parts = path.split(".")[:-1]
    last = max((i for i, c in enumerate(parts) if _INT.match(c)), default=None)
    return None if last is None else ".".join(parts[: last + 1])


def check_kinds(caller: str, kinds: Any) -> frozenset[str] | None:
    """Validate a kind or an iterable of kinds against :data:`KINDS`."""
    if kinds is None:
        return None
    if not isinstance(kinds, str) and not isinstance(kinds, Iterable):
        raise TypeError(
            f"{caller}: expected kinds to be None, a site kind or a list of kinds, but got "
            f"{kinds!r}. Pass e.g. kinds='attention' or kinds=['element', 'attention']; "
            f"known kinds: {', '.join(KINDS)}."
        )
    items = [kinds] if isinstance(kinds, str) else list(kinds)
    for kind in items:
        if not isinstance(kind, str) or kind not in KINDS:
            raise ValueError(
                f"{caller}: expected a site kind, but got {kind!r}. "
                f"Known kinds: {', '.join(KINDS)}."
            )
    return frozenset(items)


Where = str | re.Pattern[str] | Callable[[DropoutSite], bool]


def check_where(call: str, where: Any, name: str = "where") -> None:
    """Raise TypeError unless ``where`` is None, a glob, a regex or a one-argument predicate."""
    if where is None or isinstance(where, (str, re.Pattern)):
        return
    if not callable(where):
        raise TypeError(
            f"{call}: expected {name} to be None, a glob string, a compiled regex or a "
            f"predicate on the site, but got {where!r}. Pass e.g. {name}='encoder.*' or "
            f"{name}=lambda site: site.p > 0."
        )
    check_callable(call, where, name, 1, f"{name}=lambda site: site.p > 0")


def match_where(where: Where | None, site: DropoutSite) -> bool:
    """Whether ``site`` matches a glob on its path, a regex, or a predicate."""
    import fnmatch

    if where is None:
        return True
    if isinstance(where, str):
        return fnmatch.fnmatchcase(site.path, where) or fnmatch.fnmatchcase(site.name, where)
    if isinstance(where, re.Pattern):
        return where.search(site.name) is not None
    return bool(where(site))


def set_dropout(
    model: nn.Module,
    p: float | Mapping[str, float] | Callable[[DropoutSite, float], float],
    *,
    kinds: str | Iterable[str] | None = None,
    where: Where | None = None,
    probe_inputs: Any = None,
) -> list[Any]:
    """Set the drop rates of a live model and of its Hugging Face config together.

    Every selected site gets its new rate (dropout modules' ``p``, DropPath's
    ``drop_prob``, float attributes such as Llama's ``attention_dropout``), and
    for each Hugging Face ``PreTrainedModel`` inside ``model`` the config fields
    that build those sites (``hidden_dropout_prob``, ``attn_pdrop``,
    ``drop_path_rate``, ...) are updated, so ``save_pretrained`` then
    ``from_pretrained`` rebuilds the same rates. Which field builds which site is
    measured, not guessed: the model class is instantiated on the ``meta`` device
    with each field set to a marker value. A site that a config field scales
    (ConvNeXt's stochastic depth, ``drop_path_rate * i / (n - 1)``) keeps that
    rule when ``p`` is a number or mapping: the field gets ``p`` and the site
    ``p`` times its factor. Everything is validated before anything changes.

    Args:
        model: Any module.
        p: A drop probability in ``[0, 1]`` for every selected site (``1``, drop
            everything, as ``torch.nn.Dropout(1.0)`` accepts it, except at
            variants whose scaling divides by ``1 - p``: alpha, Gaussian and
            concrete dropout); a mapping
            ``kind -> p`` (kinds absent from it keep their rates); or a function
            ``fn(site, depth_fraction) -> p`` called per site, where
            ``depth_fraction`` runs from 0 (first block) to 1 (last block), so
            ``lambda s, d: 0.1 * d`` gives deeper layers higher rates.
        kinds: Only sites of these kinds.
        where: Only sites whose path matches this glob (``"encoder.layer.1*"``,
            matched against ``path`` and ``path.attr``), regex (searched in
            ``path.attr``) or predicate on the site. Functional sites (no knob)
            are never changed. Models without a config (timm, plain PyTorch) get
            ``p`` literally at every selected site.
        probe_inputs: Inputs for one probe forward (see :func:`find_dropout`), so
            that rates a custom forward passes to ``F.dropout`` /
            ``scaled_dot_product_attention`` from a float attribute of any name
            (``F.dropout(x, self.rate, self.training)``) are found and set too.

    Returns:
        One :class:`~dropkit._setter.DropoutChange` per changed rate, live sites
        first, then config fields (``control="config"``, ``attr`` = field name).

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or ``p`` has a wrong type.
        ValueError: If a rate is outside ``[0, 1]`` (``[0, 1)`` at alpha,
            Gaussian or concrete dropout) or a kind is unknown.

    Warns:
        UserWarning: If ``where`` / ``kinds`` select no site (nothing changes),
        or a kind in a mapping ``p`` selects none (``{"path": 0.1}`` on a model
        built without DropPath: rebuild it with ``drop_path_rate``);
        if a config field cannot express the new per-site rates, or a changed
        site of a Hugging Face model is built by no config field (the live rate
        changes, a reload would not keep it); if a selected config-only site
        (see :func:`find_dropout`) would need modules the model was built without.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2))
        >>> [(c.path, c.old, c.new) for c in set_dropout(net, 0.3)]
        [('1', 0.2, 0.3)]
    """
    from dropkit._setter import apply_set_dropout

    return apply_set_dropout(model, p, kinds=kinds, where=where, probe_inputs=probe_inputs)

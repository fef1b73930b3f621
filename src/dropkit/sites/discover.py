"""Static discovery of dropout sites by reading module classes and attributes.

A module is a dropout site in one of three ways:

* it *is* a dropout module (``torch.nn`` dropout classes, any module with a class
  attribute ``kind`` and an attribute ``p`` such as dropkit's variants, timm's
  ``DropPath`` / ``DropBlock2d`` and Hugging Face ``*DropPath`` with ``drop_prob``);
* a parent reads the child's rate at forward time instead of calling it (BERT's
  fused attention passes ``self.dropout.p if self.training`` to
  ``scaled_dot_product_attention``), so the *parent's* training flag gates it;
* it keeps the rate as a float attribute read at forward time (Llama's
  ``attention_dropout``, BART's ``dropout`` / ``activation_dropout`` /
  ``layerdrop``, timm ResNet's ``drop_rate``), gated by its own training flag.

Class source code is scanned once per class (cached) to tell which attributes a
forward reads and whether it reads ``self.training``.

timm's conventions are core data here, read by duck typing without importing
timm: ``DropPath`` (stochastic depth) and ``DropBlock2d`` store their rate as
``drop_prob`` (Hugging Face's ``ConvNextDropPath``, ``SwinDropPath``, ... follow
it); blocks hold ``attn_drop`` / ``proj_drop`` modules whose rate the fused
attention reads (found by source reading).

:func:`static_sites` lists the sites found this way; :func:`with_depth` turns
raw records from any finder into :class:`~dropkit.sites.record.DropoutSite`
records with their block depth.

References:
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    Ghiasi et al., "DropBlock: A regularization method for convolutional
    networks", NeurIPS 2018.
"""

from __future__ import annotations

import inspect
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from dropkit.sites.record import DropoutSite, RawSite

#: Site kinds shared by ``find_dropout`` and the dropout variants.
KINDS: tuple[str, ...] = (
    "element",
    "spatial",
    "alpha",
    "gaussian",
    "locked",
    "embedding",
    "weight",
    "attention",
    "path",
    "block",
    "layer",
    "concrete",
)

_TORCH_KINDS: dict[type[nn.Module], str] = {
    nn.Dropout: "element",
    nn.Dropout1d: "spatial",
    nn.Dropout2d: "spatial",
    nn.Dropout3d: "spatial",
    nn.AlphaDropout: "alpha",
    nn.FeatureAlphaDropout: "alpha",
}

_DROP_NAME = re.compile(r"drop", re.IGNORECASE)
_CHILD_P = re.compile(r"self\.(\w+)\.p\b")
_SELF_ATTR = re.compile(r"self\.(\w+)\b")
# A call of a dropout functional or of attention with a dropout argument.
_FUNCTIONAL = re.compile(r"\b(?:\w*dropout[123]?d?|scaled_dot_product_attention)\s*\(")


@dataclass(frozen=True)
class ClassInfo:
    """What a module class's methods (``__init__`` excluded) read."""

    has_source: bool
    reads_training: bool
    child_p_reads: frozenset[str]
    attr_reads: frozenset[str]
    calls_dropout: bool = False


_INFO: dict[type, ClassInfo] = {}


def class_info(cls: type) -> ClassInfo:
    """Scan the methods of ``cls`` and its bases below ``nn.Module`` (cached)."""
    if cls not in _INFO:
        _INFO[cls] = _scan(cls)
    return _INFO[cls]


def _scan(cls: type) -> ClassInfo:
    texts: list[str] = []
    found = False
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or klass.__module__.startswith("torch.nn."):
            continue
        for name, member in vars(klass).items():
            if name == "__init__" or not inspect.isfunction(member):
                continue
            try:
                texts.append(inspect.getsource(member))
                found = True
            except (OSError, TypeError):
                continue
    text = "\n".join(texts)
    return ClassInfo(
        has_source=found,
        reads_training="self.training" in text,
        child_p_reads=frozenset(_CHILD_P.findall(text)),
        attr_reads=frozenset(_SELF_ATTR.findall(text)),
        calls_dropout=_FUNCTIONAL.search(text) is not None,
    )


def module_rate(module: nn.Module) -> tuple[str, str] | None:
    """Return ``(kind, rate attribute)`` if ``module`` is itself a dropout module."""
    for klass in type(module).__mro__:
        if klass in _TORCH_KINDS:
            return _TORCH_KINDS[klass], "p"
    kind = getattr(type(module), "kind", None)
    if isinstance(kind, str) and kind in KINDS and _is_rate(getattr(module, "p", None)):
        return kind, "p"
    return timm_module_rate(module)


def timm_module_rate(module: nn.Module) -> tuple[str, str] | None:
    """Return ``(kind, "drop_prob")`` for DropPath / DropBlock style modules.

    Args:
        module: Any module.

    Returns:
        ``("path", "drop_prob")`` for a class whose name contains ``DropPath``,
        ``("block", "drop_prob")`` for one containing ``DropBlock``, else None.
    """
    value = getattr(module, "drop_prob", None)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    name = type(module).__name__
    if "DropPath" in name:
        return "path", "drop_prob"
    if "DropBlock" in name:
        return "block", "drop_prob"
    return None


def _is_rate(value: object) -> bool:
    return (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= float(value) <= 1
    )


def attribute_kind(owner: nn.Module, name: str) -> str:
    """Kind of a float rate attribute ``name`` held by ``owner``."""
    low = name.lower()
    if "layerdrop" in low or "layer_drop" in low:
        return "layer"
    if "path" in low or low == "drop_prob":
        return "path"
    if "attn" in low or "attention" in low or "Attention" in type(owner).__name__:
        return "attention"
    return "element"


def rate_attributes(module: nn.Module) -> list[str]:
    """Names of float rate attributes that ``module`` reads at forward time.

    An attribute qualifies when its name contains ``drop``, its value is a number
    in ``[0, 1]`` and the class reads it (and ``self.training``) outside
    ``__init__``. Without source code, the name and value alone decide.
    """
    if module_rate(module) is not None:
        return []
    info = class_info(type(module))
    if info.has_source and not (info.reads_training and info.attr_reads):
        return []  # the class's own code decides: it reads no rate gated by its flag
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or not _DROP_NAME.search(name) or not _is_rate(value):
            continue
        if info.has_source and (not info.reads_training or name not in info.attr_reads):
            continue
        names.append(name)
    return names


def parent_reads_child_p(parent: nn.Module, child_name: str) -> bool:
    """Whether ``parent``'s forward reads ``self.<child_name>.p`` gated by its flag."""
    info = class_info(type(parent))
    return info.reads_training and child_name in info.child_p_reads


def child_kind(parent: nn.Module, child_name: str, base: str) -> str:
    """Kind of a dropout child whose rate the parent passes to attention."""
    low = child_name.lower()
    if "attn" in low or "attention" in low or "Attention" in type(parent).__name__:
        return "attention"
    return base


def calls_dropout_functionally(model: nn.Module) -> bool:
    """Whether a module class of ``model`` (torch's own excluded) calls dropout by function.

    Read from the classes' source, no forward: such dropout is found only by
    ``find_dropout(model, probe_inputs=...)``.
    """
    return any(class_info(type(m)).calls_dropout for m in model.modules())


_INT = re.compile(r"^\d+$")


def static_sites(model: nn.Module) -> list[DropoutSite]:
    """The sites of ``model`` found by inspection (modules and rate attributes), in module order."""
    named = list(model.named_modules())  # one walk serves discovery and ordering
    return with_depth(model, raw_static_sites(model, named), named)


def raw_static_sites(
    model: nn.Module, named: list[tuple[str, nn.Module]] | None = None
) -> list[RawSite]:
    """Raw records of the sites found by inspection (see :func:`static_sites`).

    ``named`` is ``list(model.named_modules())`` when the caller already has it.
    """
    modules = dict(model.named_modules() if named is None else named)
    raw: list[RawSite] = []
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
            raw.append(RawSite(path, kind, p, p > 0 and gates[0].training, "module", attr, gates))
        for attr in rate_attributes(module):
            p = float(getattr(module, attr))
            kind = attribute_kind(module, attr)
            raw.append(
                RawSite(path, kind, p, p > 0 and module.training, "attribute", attr, (module,))
            )
    return raw


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


def with_depth(
    model: nn.Module,
    raw: Iterable[RawSite],
    named: list[tuple[str, nn.Module]] | None = None,
) -> list[DropoutSite]:
    """Sort raw records into module order and give each its block depth.

    ``named`` is ``list(model.named_modules())`` when the caller already has it.
    """
    named = list(model.named_modules()) if named is None else named
    paths = {id(m): p for p, m in named}
    order = {p: i for i, (p, _) in enumerate(named)}
    rows = sorted(raw, key=lambda r: order.get(r.path, len(order)))
    blocks: list[str] = []
    for row in rows:
        key = _block_key(row.path)
        if key is not None and key not in blocks:
            blocks.append(key)
    index = {b: i for i, b in enumerate(blocks)}
    first = next((i for i, r in enumerate(rows) if _block_key(r.path) is not None), len(rows))
    sites = []
    for i, row in enumerate(rows):
        key = _block_key(row.path)
        depth = index.get(key) if key is not None else None
        if depth is None:
            fraction = 0.0 if i < first else 1.0
        else:
            fraction = depth / (len(blocks) - 1) if len(blocks) > 1 else 1.0
        ints = [int(c) for c in row.path.split(".")[:-1] if _INT.match(c)]
        gates = row.gates
        module = None if not gates else gates[-1] if row.control == "module" else gates[0]
        sites.append(
            DropoutSite(
                path=row.path,
                kind=row.kind,
                p=row.p,
                active=row.active,
                control=row.control,
                attr=row.attr,
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

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
"""

from __future__ import annotations

import inspect
import numbers
import re
from dataclasses import dataclass

from torch import nn

from dropkit.integrations.timm import timm_module_rate

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

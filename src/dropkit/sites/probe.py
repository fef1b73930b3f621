"""Probe forward that finds dropout calls made by custom modules.

Static inspection finds dropout modules and rate attributes, but a custom module
may call ``F.dropout(x, 0.2, self.training)`` or
``F.scaled_dot_product_attention(q, k, v, dropout_p=...)`` with a literal or a
rate computed on the fly. A ``TorchFunctionMode`` sees every such call during one
forward; global module forward hooks keep a stack of the modules running, so each
call is attributed to the innermost one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from dropkit._call import call_model
from dropkit.sites.claims import held
from dropkit.sites.discover import class_info
from dropkit.sites.record import Control, DropoutSite, RawSite

_DROPOUT_FUNCS: dict[Any, str] = {
    F.dropout: "element",
    F.dropout1d: "spatial",
    F.dropout2d: "spatial",
    F.dropout3d: "spatial",
    F.alpha_dropout: "alpha",
    F.feature_alpha_dropout: "alpha",
}


class _Recorder(TorchFunctionMode):
    def __init__(self, stack: list[nn.Module]) -> None:
        super().__init__()
        self.stack = stack
        self.calls: list[tuple[nn.Module | None, str, float]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        kind = _DROPOUT_FUNCS.get(func)
        if kind is not None:
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            self.calls.append((self.stack[-1] if self.stack else None, kind, float(p)))
        elif func is F.scaled_dot_product_attention:
            p = float(kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0))
            if p > 0:
                self.calls.append((self.stack[-1] if self.stack else None, "attention", p))
        return func(*args, **kwargs)


def probe_functional(model: nn.Module, inputs: Any, known: list[DropoutSite]) -> list[RawSite]:
    """Run one forward and return raw functional sites not explained by ``known``.

    Every module except BatchNorm / InstanceNorm runs with ``training=True`` under
    ``torch.no_grad``; flags and buffers are restored afterwards.

    Returns:
        One record per call site not explained by ``known``: ``control="attribute"``
        when a float attribute of the calling module holds the rate, else
        ``"functional"`` (``attr=None``), gated by the calling module.
    """
    paths = {id(m): p for p, m in model.named_modules()}
    explained = {id(g) for s in known for g in s.gates} | {id(s.module) for s in known}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    stack: list[nn.Module] = []

    # the module hooks are global: forwards of other threads must not enter this stack
    me = threading.get_ident()

    def pre(module: nn.Module, args: Any) -> None:
        if id(module) in paths and threading.get_ident() == me:
            stack.append(module)

    def post(module: nn.Module, args: Any, out: Any) -> None:
        if stack and stack[-1] is module and threading.get_ident() == me:
            stack.pop()

    recorder = _Recorder(stack)
    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
    # Flags are held like mc_mode's (reference counted): a concurrent MC call on the
    # same model and this probe give each other's flags back correctly.
    flags = [(m, "training", not isinstance(m, _NormBase)) for m in model.modules()]
    try:
        with held(flags), torch.no_grad(), recorder:
            try:
                call_model(model, inputs)
            except Exception as exc:
                raise _probing_error(exc, inputs) from exc
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    found: dict[tuple[str, str], RawSite] = {}
    for caller, kind, p in recorder.calls:
        if caller is None or id(caller) in explained:
            continue
        path = paths[id(caller)]
        attr = _rate_attribute(caller, p)
        key = (path, attr or kind)
        old = found.get(key)
        if old is None or p > old.p:
            control: Control = "functional" if attr is None else "attribute"
            found[key] = RawSite(path, kind, p, p > 0 and caller.training, control, attr, (caller,))
    return list(found.values())


def _rate_attribute(caller: nn.Module, p: float) -> str | None:
    """The float attribute of ``caller`` that holds the rate ``p`` it passed, if exactly one.

    A custom ``F.dropout(x, self.rate, self.training)`` keeps its rate in an
    attribute whose name need not contain ``drop``: when the probed rate equals
    exactly one float attribute that the class's methods read, that attribute
    is the knob (``set_dropout(..., probe_inputs=...)`` can change it).
    """
    if p <= 0:
        return None
    reads = class_info(type(caller)).attr_reads
    names = [
        name
        for name, value in vars(caller).items()
        if not name.startswith("_") and name in reads and isinstance(value, float) and value == p
    ]
    return names[0] if len(names) == 1 else None


def _probing_error(exc: Exception, inputs: Any) -> Exception:
    if isinstance(inputs, Mapping):
        shown: Any = {
            k: tuple(getattr(v, "shape", ())) or type(v).__name__ for k, v in inputs.items()
        }
    elif isinstance(inputs, (tuple, list)):
        shown = [tuple(getattr(v, "shape", ())) or type(v).__name__ for v in inputs]
    else:
        shown = tuple(getattr(inputs, "shape", ())) or type(inputs).__name__
    message = (
        f"find_dropout: {type(exc).__name__} while probing with probe_inputs={shown}: {exc} "
        "Pass probe_inputs the model's forward accepts: a tensor (model(x)), a tuple of "
        "positional arguments or a mapping of keyword arguments (model(**inputs))."
    )
    try:
        return type(exc)(message)
    except Exception:  # an exception type with another constructor
        return RuntimeError(message)

"""Per-thread ``forward`` overrides on modules that concurrent MC calls share.

While ``mc_predict`` runs, each controllable dropout module is routed through a
forward that draws the call's seeded masks. An instance ``forward`` attribute is
shared by every thread, so two calls on one model would overwrite (and, closing
in the wrong order, leave behind) each other's. Instead one dispatching forward
is installed per module, reference counted across threads, and it calls the
calling thread's latest override, or the module's own forward when the thread
has none. The module's ``__dict__`` is as before once the last user leaves.

No paper here: plumbing for :mod:`dropkit.uncertainty.masks`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from torch import nn

_MISSING = object()
_LOCK = threading.Lock()
# id(module) -> [users in all threads, the instance forward it had before, or _MISSING]
_INSTALLED: dict[int, list[Any]] = {}
_LOCAL = threading.local()


def _stacks() -> dict[int, list[Callable[..., Any]]]:
    stacks = getattr(_LOCAL, "stacks", None)
    if stacks is None:
        stacks = _LOCAL.stacks = {}
    return stacks


def _dispatcher(module: nn.Module, saved: Any) -> Callable[..., Any]:
    key = id(module)

    def forward(*args: Any, **kwargs: Any) -> Any:
        stack = _stacks().get(key)
        if stack:
            return stack[-1](*args, **kwargs)
        if saved is _MISSING:
            return type(module).forward(module, *args, **kwargs)
        return saved(*args, **kwargs)

    return forward


def push_forward(module: nn.Module, fn: Callable[..., Any]) -> None:
    """Route ``module``'s forward through ``fn`` in the calling thread until :func:`pop_forward`."""
    key = id(module)
    with _LOCK:
        entry = _INSTALLED.get(key)
        if entry is None:
            saved = module.__dict__.get("forward", _MISSING)
            module.forward = _dispatcher(module, saved)  # type: ignore[method-assign]
            _INSTALLED[key] = [1, saved]
        else:
            entry[0] += 1
    _stacks().setdefault(key, []).append(fn)


def pop_forward(module: nn.Module) -> None:
    """Undo the calling thread's latest :func:`push_forward` on ``module``."""
    key = id(module)
    stacks = _stacks()
    stack = stacks.get(key)
    if stack:
        stack.pop()
        if not stack:
            del stacks[key]
    with _LOCK:
        entry = _INSTALLED.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] <= 0:
            del _INSTALLED[key]
            if entry[1] is _MISSING:
                module.__dict__.pop("forward", None)
            else:
                module.forward = entry[1]  # type: ignore[method-assign]

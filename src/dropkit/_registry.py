"""Name -> dropout class registry behind :func:`create_dropout` and :func:`list_dropouts`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}

T = TypeVar("T", bound=type[nn.Module])


def register_dropout(name: str) -> Callable[[T], T]:
    """Class decorator that registers a dropout module under ``name``."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(
                f"register_dropout: expected a new name, but got {name!r}. "
                f"It already names {_REGISTRY[name].__name__}; choose another name."
            )
        _REGISTRY[name] = cls
        return cls

    return wrap


def _ensure_loaded() -> None:
    # Importing dropkit.nn runs every @register_dropout decorator.
    import dropkit.nn  # noqa: F401


def list_dropouts() -> list[str]:
    """Return the registered dropout names, sorted.

    Example:
        >>> "locked" in list_dropouts()
        True
    """
    _ensure_loaded()
    return sorted(_REGISTRY)


def create_dropout(name: str, /, **kwargs: Any) -> nn.Module:
    """Build a registered dropout module by name.

    Args:
        name: A name from :func:`list_dropouts`, e.g. ``"locked"``.
        **kwargs: Passed to the module's constructor (e.g. ``p=0.3``).

    Returns:
        The new module.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the known names.
        TypeError: If a keyword is not an argument of the class; the message
            lists the valid ones.

    Example:
        >>> create_dropout("locked", p=0.3)
        LockedDropout(p=0.3, batch_first=False)
    """
    _ensure_loaded()
    if not isinstance(name, str) or name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(
            f"create_dropout: expected a registered dropout name, but got {name!r}. "
            f"Known names: {known}."
        )
    cls = _REGISTRY[name]
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())
    valid = [
        k
        for k, v in params.items()
        if k != "self" and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)
    ]
    unknown = [k for k in kwargs if k not in valid]
    if unknown and not takes_any:
        raise TypeError(
            f"create_dropout: expected keyword arguments of {cls.__name__} "
            f"({', '.join(valid)}), but got {unknown[0]!r}. The drop probability is p "
            f"(e.g. create_dropout({name!r}, p=0.1))."
        )
    return cls(**kwargs)


def registered() -> dict[str, type[nn.Module]]:
    """Return a copy of the registry (name -> class)."""
    _ensure_loaded()
    return dict(_REGISTRY)

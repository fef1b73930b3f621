"""Deprecated module path: :func:`mc_mode` and :func:`guard` live in :mod:`dropkit.sites`.

``from dropkit.modes import mc_mode`` keeps working for one release, with a
``DeprecationWarning`` naming the new path (``dropkit.sites``, or
``dropkit.mc_mode``).
"""

from __future__ import annotations

import warnings

_MOVED = ("mc_mode", "MCMode", "guard", "GuardHandle", "DropoutActiveWarning", "held")


def __getattr__(name: str) -> object:
    if name in _MOVED:
        warnings.warn(
            f"dropkit.modes is deprecated: import {name} from dropkit.sites instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        from dropkit.sites import modes

        return getattr(modes, name)
    raise AttributeError(f"module 'dropkit.modes' has no attribute {name!r}")

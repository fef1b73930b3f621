"""Deprecated module path: :func:`mc_mode` and :func:`guard` live in :mod:`dropkit.sites`.

``from dropkit.modes import mc_mode`` keeps working for one release, with a
``DeprecationWarning`` naming the new path (``dropkit.sites.modes``; also
importable as ``dropkit.sites.mc_mode`` or ``dropkit.mc_mode``).
"""

from __future__ import annotations

from dropkit._moved import moved_names

_MOVED = ("mc_mode", "MCMode", "guard", "GuardHandle", "DropoutActiveWarning", "held")

__getattr__ = moved_names(__name__, dict.fromkeys(_MOVED, "dropkit.sites.modes"))

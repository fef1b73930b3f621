"""Deprecated: timm's conventions are core heuristics now (they import no timm).

``timm_module_rate`` lives in :mod:`dropkit.sites.discover`, ``HEAD_NAMES`` and
``is_head_path`` in :mod:`dropkit.sites.heads`. The old names are reachable
here for one release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

from dropkit._moved import moved_names

_MOVED: dict[str, str] = {
    "timm_module_rate": "dropkit.sites.discover",
    "HEAD_NAMES": "dropkit.sites.heads",
    "is_head_path": "dropkit.sites.heads",
}


__getattr__ = moved_names(__name__, _MOVED)

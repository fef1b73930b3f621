"""Deprecated: timm's conventions are core heuristics now (they import no timm).

``timm_module_rate`` lives in :mod:`dropkit.sites.discover`, ``HEAD_NAMES`` and
``is_head_path`` in :mod:`dropkit.sites.heads`. The old names are reachable
here for one release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings

_MOVED: dict[str, str] = {
    "timm_module_rate": "dropkit.sites.discover",
    "HEAD_NAMES": "dropkit.sites.heads",
    "is_head_path": "dropkit.sites.heads",
}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        warnings.warn(
            f"dropkit.integrations.timm.{name} is deprecated: use {_MOVED[name]}.{name}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'dropkit.integrations.timm' has no attribute {name!r}")

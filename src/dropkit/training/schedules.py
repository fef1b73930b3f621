"""Deprecated: moved to :mod:`dropkit.schedules.time` (one home for rate schedules).

``from dropkit.training.schedules import X`` keeps working for one release with a
``DeprecationWarning``; import from ``dropkit.schedules`` instead.
"""

from __future__ import annotations

import importlib
import warnings

_NEW = "dropkit.schedules.time"


def __getattr__(name: str) -> object:
    module = importlib.import_module(_NEW)
    if name.startswith("__") or name not in module.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"{__name__}.{name} is deprecated; import {name} from {_NEW}.",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(module, name)


def __dir__() -> list[str]:
    return list(importlib.import_module(_NEW).__all__)

"""Deprecated: moved to :mod:`dropkit.schedules.time` (one home for rate schedules).

``from dropkit.training.schedules import X`` keeps working for one release with a
``DeprecationWarning``; import from ``dropkit.schedules`` instead.
"""

from __future__ import annotations

from dropkit import schedules as _schedules
from dropkit._moved import moved_names

_NEW = "dropkit.schedules.time"
_TABLE = dict.fromkeys(_schedules.time.__all__, _NEW)

__getattr__ = moved_names(__name__, _TABLE)


def __dir__() -> list[str]:
    return sorted(_TABLE)

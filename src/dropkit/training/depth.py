"""Deprecated: moved to :mod:`dropkit.schedules.depth` (one home for rate schedules).

``from dropkit.training.depth import X`` keeps working for one release with a
``DeprecationWarning``; import from ``dropkit.schedules`` instead.
"""

from __future__ import annotations

from dropkit import schedules as _schedules
from dropkit._moved import moved_names

_NEW = "dropkit.schedules.depth"
_TABLE = dict.fromkeys(_schedules.depth.__all__, _NEW)

__getattr__ = moved_names(__name__, _TABLE)


def __dir__() -> list[str]:
    return sorted(_TABLE)

"""Optuna studies over dropout rates (``dropkit sweep``).

* :func:`run_study`: an Optuna study over dropout rates (global, per kind,
  depth profile), weight decay and rate schedules, on an SQLite file or a
  shared PostgreSQL database for many workers.
* :class:`SearchSpace`, :func:`site_rate`: what a trial samples.
* :class:`Predictions`, :data:`OBJECTIVES`: what a task returns and how a
  trial is scored.
* :class:`DigitsTask`, :class:`UCITask`, :func:`load_task`: the built-in tasks.

The UCI MC-dropout protocol engine (batched grid training, per-model streams,
the protocol itself) lives in :mod:`dropkit.bench.uci`; its names imported from
here still work one release, with a ``DeprecationWarning`` naming the new path.

Names are imported lazily (Optuna loads only when used).
"""

from __future__ import annotations

import importlib
from typing import Any

from dropkit._moved import moved_names

_API = {
    "run_study": "dropkit.sweep.study",
    "open_storage": "dropkit.sweep.study",
    "SearchSpace": "dropkit.sweep.space",
    "site_rate": "dropkit.sweep.space",
    "Predictions": "dropkit.sweep.objectives",
    "OBJECTIVES": "dropkit.sweep.objectives",
    "DigitsTask": "dropkit.sweep.tasks",
    "UCITask": "dropkit.sweep.tasks",
    "load_task": "dropkit.sweep.tasks",
}

# the UCI protocol engine, moved to dropkit.bench.uci (issue 14): deprecated here
_MOVED = {
    "BatchedMLP": "dropkit.bench.uci.batched",
    "ModelStream": "dropkit.bench.uci.streams",
    "train_one": "dropkit.bench.uci.reference",
    "mc_regression": "dropkit.bench.uci.mc",
    "UCIData": "dropkit.bench.uci.data",
    "load_uci": "dropkit.bench.uci.data",
    "ProtocolSettings": "dropkit.bench.uci.protocol",
    "run_uci": "dropkit.bench.uci.protocol",
}

__all__ = sorted(_API)

_moved = moved_names(__name__, _MOVED, note="The UCI benchmark engine is part of dropkit.bench.")


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    return _moved(name)


def __dir__() -> list[str]:
    return __all__

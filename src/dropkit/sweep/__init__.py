"""Dropout sweeps and batched grid training.

* :func:`run_study` / ``dropkit sweep``: Optuna studies over dropout rates
  (global, per kind, depth profile), weight decay and rate schedules, on an
  SQLite file or a shared PostgreSQL database for many workers.
* :class:`BatchedMLP`: a whole grid of small MC-dropout regression networks
  trained as one batched computation, with :func:`train_one`'s masks and data
  order (weights equal up to floating-point rounding of the batched matmuls).
* :func:`load_uci` / :func:`run_uci`: the UCI MC-dropout benchmark protocol
  (``dropkit bench uci``).

Names are imported lazily (Optuna and numba load only when used).
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "BatchedMLP": "dropkit.sweep.batched",
    "ModelStream": "dropkit.sweep.streams",
    "train_one": "dropkit.sweep.reference",
    "mc_regression": "dropkit.sweep.mc",
    "UCIData": "dropkit.sweep.uci",
    "load_uci": "dropkit.sweep.uci",
    "ProtocolSettings": "dropkit.sweep.protocol",
    "run_uci": "dropkit.sweep.protocol",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dropkit.sweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

"""dropkit: dropout done right for PyTorch.

Variants (``dropkit.nn`` / ``dropkit.functional``), fast kernels, finding and
controlling dropout in any model (Hugging Face and timm included), safe Monte
Carlo dropout with exact uncertainty, metrics and rival methods, training tools
and sweeps. Public names are imported lazily so ``import dropkit`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    # variants
    "Dropout": "dropkit.nn",
    "Dropout1d": "dropkit.nn",
    "Dropout2d": "dropkit.nn",
    "Dropout3d": "dropkit.nn",
    "AlphaDropout": "dropkit.nn",
    "AttentionDropout": "dropkit.nn",
    "FeatureAlphaDropout": "dropkit.nn",
    "GaussianDropout": "dropkit.nn",
    "LockedDropout": "dropkit.nn",
    "EmbeddingDropout": "dropkit.nn",
    "WeightDrop": "dropkit.nn",
    "DropPath": "dropkit.nn",
    "DropBlock2d": "dropkit.nn",
    "LayerDrop": "dropkit.nn",
    "ConcreteDropout": "dropkit.nn",
    "ClassifierHead": "dropkit.nn",
    "create_dropout": "dropkit._registry",
    "list_dropouts": "dropkit._registry",
    # model control
    "DropoutSite": "dropkit.sites",
    "DropoutChange": "dropkit.sites",
    "find_dropout": "dropkit.sites",
    "set_dropout": "dropkit.sites",
    "mc_mode": "dropkit.sites",
    "MCMode": "dropkit.sites",
    "guard": "dropkit.sites",
    "GuardHandle": "dropkit.sites",
    "fast_dropout": "dropkit.swap",
    # uncertainty
    "MCResult": "dropkit.uncertainty",
    "mc_predict": "dropkit.uncertainty",
    "compare_uncertainty": "dropkit.baselines",
    # pools of any size, locally or on Ray
    "score_pool": "dropkit.score",
}

_SUBMODULES = (
    "nn",
    "functional",
    "kernels",
    "metrics",
    "baselines",
    "active",
    "training",
    "schedules",
    "sweep",
    "uncertainty",
    "integrations",
)

__all__ = sorted([*_API, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"dropkit.{name}")
    raise AttributeError(f"module 'dropkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__

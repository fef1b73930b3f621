"""Import optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, caller: str) -> ModuleType:
    """Import ``module`` or raise ImportError telling which dropkit extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{caller}: expected the optional dependency {module!r}, but it is not installed. "
            f"Install it with: pip install 'dropkit[{extra}]'"
        ) from exc

"""The one mechanism for names that moved: old paths warn and still resolve.

A module whose names moved keeps a table ``name -> new module`` and sets
``__getattr__ = moved_names(__name__, table)`` (PEP 562). Reading a moved name
warns once per access with a ``DeprecationWarning`` that names the new path,
``"<old module>.<name> is deprecated: import <name> from <new module>."``, and
returns the object itself; any other name raises the usual AttributeError.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping

__all__ = ["moved_names"]


def moved_names(
    module: str, table: Mapping[str, str], *, note: str = ""
) -> Callable[[str], object]:
    """Return a module ``__getattr__`` resolving the names of ``table`` with a warning.

    Args:
        module: The old module's name (``__name__``).
        table: Moved name -> the module that defines it now.
        note: An optional sentence appended to the warning (why it moved).

    Returns:
        ``__getattr__(name)`` for the old module.

    Example:
        >>> getattr_ = moved_names("old.place", {"sqrt": "math"})
        >>> import pytest
        >>> with pytest.warns(DeprecationWarning, match="old.place.sqrt is deprecated"):
        ...     getattr_("sqrt")(4.0)
        2.0
    """
    table = dict(table)

    def __getattr__(name: str) -> object:
        new = table.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        message = f"{module}.{name} is deprecated: import {name} from {new}."
        warnings.warn(f"{message} {note}".strip(), DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__

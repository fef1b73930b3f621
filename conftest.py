"""Collection of ``src/dropkit`` for its doctests (``--doctest-modules``).

Every module of the package is imported to collect its examples. The kernel
modules for optional accelerators import their compiler at the top (that is
their job); where that dependency is not installed (a torch CPU wheel has no
triton, an install without the ``fast`` extra no numba) the module is left out
of collection instead of failing it. Nothing else is left out: a module that
fails to import for any other reason fails the suite.
"""

from __future__ import annotations

import importlib.util

_NEEDS = {
    "src/dropkit/kernels/_triton.py": "triton",
    "src/dropkit/kernels/_numba.py": "numba",
    "src/dropkit/sweep/_fused.py": "numba",
}

collect_ignore = [path for path, dep in _NEEDS.items() if importlib.util.find_spec(dep) is None]

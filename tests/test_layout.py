"""The test suite's own layout: its folders never take an installed package's name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_folders_do_not_shadow_top_level_modules():
    # collection has imported every test folder by now: none may be a top-level module
    # (tests/kernels once was, and transformers then found it instead of `kernels`)
    folders = [d.name for d in TESTS.iterdir() if (d / "__init__.py").is_file()]
    assert "kernels" in folders
    for name in folders:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        assert origin is None or not origin.is_relative_to(TESTS), (name, origin)

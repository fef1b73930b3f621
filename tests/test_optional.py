from __future__ import annotations

import pytest

from dropkit._optional import require


def test_require_names_the_extra() -> None:
    with pytest.raises(
        ImportError,
        match=r"bench digits: expected the optional dependency 'no_such_module_xyz', but it is "
        r"not installed. Install it with: pip install 'dropkit\[metrics\]'",
    ):
        require("no_such_module_xyz", "metrics", "bench digits")


def test_require_returns_the_module() -> None:
    assert require("json", "metrics", "x").dumps([1]) == "[1]"

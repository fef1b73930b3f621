"""Fixtures of the benchmark tests (`dropkit bench ...`): the UCI data folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def uci_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "uci"

"""Fixtures of the sweep tests: the UCI data folder and a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def uci_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "uci"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Start PostgreSQL with tools/postgres.sh for the session; stop and delete it after."""
    if os.environ.get("DROPKIT_SKIP_POSTGRES") == "1":
        pytest.skip("DROPKIT_SKIP_POSTGRES=1")
    started = subprocess.run(
        ["bash", str(ROOT / "tools" / "postgres.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        pytest.fail(f"could not start PostgreSQL (make system-deps installs it):\n{started.stderr}")
    values = dict(line.split("=", 1) for line in started.stdout.split())
    try:
        yield values["url"]
    finally:
        subprocess.run(
            ["bash", str(ROOT / "tools" / "postgres.sh"), "stop", values["dir"]],
            capture_output=True,
            timeout=120,
        )

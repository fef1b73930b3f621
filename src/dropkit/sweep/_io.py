"""Checkpoints and results on disk, written atomically.

Every write goes through :func:`dropkit.report.atomic_write_bytes` (a
temporary file in the target folder, then a rename), the one atomic writer of
dropkit, so readers never see a half-written file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from dropkit.report._atomic import atomic_write_bytes


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON (missing folders are created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(target, text.encode("utf-8"))


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_torch(path: str | Path, data: Any) -> None:
    """``torch.save`` ``data`` atomically (missing folders are created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(data, buffer)
    atomic_write_bytes(target, buffer.getvalue())


def read_torch(path: str | Path) -> Any:
    """Load a checkpoint written by :func:`write_torch` (tensors and plain data only)."""
    return torch.load(Path(path), weights_only=True)

"""Atomic file writes for checkpoints and results (temp file + ``os.replace``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON; readers never see a half-written file."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    _atomic(Path(path), lambda handle: handle.write(text.encode()))


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())


def write_torch(path: str | Path, data: Any) -> None:
    """``torch.save`` ``data`` atomically."""
    _atomic(Path(path), lambda handle: torch.save(data, handle))


def read_torch(path: str | Path) -> Any:
    """Load a checkpoint written by :func:`write_torch` (tensors and plain data only)."""
    return torch.load(Path(path), weights_only=True)

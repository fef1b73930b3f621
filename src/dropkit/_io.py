"""The one home of dropkit's file writes: atomic, so nothing is half-written.

Every writer of dropkit (reports, ``metrics.json``, sweep checkpoints, score
stores, ``bench --out``) goes through :func:`atomic_write_bytes`: a temporary
file in the target folder, flushed and synced, then renamed over the target.
An interrupted run (Ctrl-C, a crash) therefore never leaves a half-written
file: the target either keeps its old content or gets the complete new one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file next to ``path`` (same file system), are
    flushed and synced, and the file is then renamed over ``path``. On any
    error, including ``KeyboardInterrupt``, the temporary file is removed.

    Args:
        path: Destination file; its folder must exist and be writable.
        data: The complete file content.

    Returns:
        The destination as a :class:`~pathlib.Path`.

    Raises:
        PermissionError: If the folder is not writable.
        FileNotFoundError: If the folder does not exist.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock tied to ``path`` while the block runs.

    The lock is a POSIX ``flock`` on the empty file ``path + ".lock"``
    (created if missing, never written), so separate processes that
    read-modify-write ``path`` take turns. Where ``fcntl`` does not exist
    (Windows) the block runs unlocked: one process per file there.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON atomically (missing folders are created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_torch(path: str | os.PathLike[str], data: Any) -> Path:
    """``torch.save`` ``data`` atomically (missing folders are created)."""
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return atomic_write_bytes(target, buffer.getvalue())


def read_torch(path: str | os.PathLike[str]) -> Any:
    """Load a checkpoint written by :func:`write_torch` (tensors and plain data only)."""
    import torch

    return torch.load(Path(path), weights_only=True)

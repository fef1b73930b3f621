"""Atomic file writes: a temporary file in the target folder, then a rename.

An interrupted run (Ctrl-C, a crash) therefore never leaves a half-written
report: the target either keeps its old content or gets the complete new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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

"""Shared by the pool readers (``pool``, ``parquet``): the id column, errors, file stats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ID_COLUMN = "row_id"


def _bad(caller: str, what: str, got: Any, fix: str) -> ValueError:
    return ValueError(f"{caller}: expected {what}, but got {got}. {fix}")


def _stat(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}

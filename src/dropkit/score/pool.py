"""Pools to score, read block by block: ``.npy``, ``.pt``, Parquet, text.

A pool is ``N`` rows, each with an integer row id, read in position ranges so
memory stays flat however large the pool is:

* ``.npy`` (``numpy.save``): memory-mapped; row id = position.
* ``.pt`` (``torch.save`` of one tensor, or of a list of same-shaped tensors);
  row id = position.
* Parquet: a file, a folder of ``*.parquet`` files or a glob, in sorted file
  order. Rows are one list column (a tensor per row, every row the same
  length), numeric columns (one value each, in schema order), or one string
  column (texts, for a Hugging Face model with its tokenizer). An integer
  ``row_id`` column, if present, gives the row ids (unique); otherwise the
  position over all files.
* ``.txt``: one text per line; blank lines are skipped and the row id is the
  0-based line number (as in ``dropkit predict``).
* In memory: a tensor or array ``(N, ...)``; row id = position.

Every pool is checked when opened (types, shapes, ids) so a bad pool fails
before any row is scored.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dropkit.score._common import ID_COLUMN, _bad, _stat


@dataclass
class Pool:
    """Rows to score, readable in position ranges.

    Attributes:
        kind: ``"tensor"`` or ``"text"``.
        n_rows: Number of rows ``N``.
        row_shape: Shape of one row (tensor pools).
        source: What was opened, for messages and the run manifest.
        fingerprint: Identity of the content (paths with sizes and mtimes, or a
            hash of in-memory data), recorded in the run manifest.
    """

    kind: str
    n_rows: int
    row_shape: tuple[int, ...]
    source: str
    fingerprint: dict[str, Any]
    _array: Any = None
    _texts: list[str] | None = None
    _ids: np.ndarray | None = None
    _files: list[Any] = field(default_factory=list)
    _columns: list[str] = field(default_factory=list)

    def row_ids(self, start: int, stop: int) -> np.ndarray:
        """Row ids of positions ``[start, stop)`` ``(n,)`` int64."""
        if self._ids is None:
            return np.arange(start, stop, dtype=np.int64)
        return self._ids[start:stop]

    def read(self, start: int, stop: int) -> torch.Tensor | list[str]:
        """Rows of positions ``[start, stop)``: a tensor ``(n, ...)`` or texts."""
        if self._texts is not None:
            return self._texts[start:stop]
        if self._array is not None:
            chunk = self._array[start:stop]
            if isinstance(chunk, np.ndarray):
                chunk = torch.from_numpy(np.array(chunk))  # copy out of the memory map
            return _as_float(chunk)
        from dropkit.score.parquet import read_range, table_matrix

        table = read_range(self._files, self._columns, start, stop)
        if self.kind == "text":
            return [str(t) for t in table.column(self._columns[0]).to_pylist()]
        matrix = np.array(table_matrix(table, self._columns, self.row_shape))  # writable copy
        return _as_float(torch.from_numpy(matrix))

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Positions of the given row ids (all must exist)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._ids is None:
            return ids
        order = np.argsort(self._ids, kind="stable")
        return order[np.searchsorted(self._ids, ids, sorter=order)]

    def take(self, positions: np.ndarray) -> torch.Tensor | list[str]:
        """Rows at arbitrary positions, in the order given."""
        parts = [self.read(int(p), int(p) + 1) for p in positions]
        if self.kind == "text":
            return [t for part in parts for t in part]  # type: ignore[union-attr]
        return torch.cat(parts)  # type: ignore[arg-type]


def _as_float(x: torch.Tensor) -> torch.Tensor:
    # floats are cast to the model's dtype when scored (score_rows); ints stay token ids
    return x


def _from_tensor(caller: str, value: Any, source: str, fingerprint: dict[str, Any]) -> Pool:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        shapes = {tuple(v.shape) for v in value}
        if len(shapes) > 1:
            first = tuple(value[0].shape)
            other = next(tuple(v.shape) for v in value if tuple(v.shape) != first)
            raise _bad(
                caller,
                f"rows of one shape in {source!r}",
                f"mixed shapes {first} and {other}",
                "Pad or crop every row to one shape before saving.",
            )
        value = torch.stack(list(value))
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise _bad(
                caller,
                f"a numeric array in {source!r}",
                f"dtype {value.dtype}",
                "Save numbers (e.g. x.astype('float32')).",
            )
        array: Any = value
    elif isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise _bad(
                caller, f"a real tensor in {source!r}", f"dtype {value.dtype}", "Save floats."
            )
        array = value.detach().cpu()
    else:
        raise TypeError(
            f"{caller}: expected a tensor or array (N, ...) in {source!r}, but got "
            f"{type(value).__name__}. Save one tensor with torch.save(x, path)."
        )
    if array.ndim == 0 or array.shape[0] == 0:
        raise _bad(
            caller,
            f"a non-empty pool laid out (N, ...) in {source!r}",
            f"shape {tuple(array.shape)}",
            "Give at least one row.",
        )
    return Pool(
        kind="tensor",
        n_rows=int(array.shape[0]),
        row_shape=tuple(int(s) for s in array.shape[1:]),
        source=source,
        fingerprint=fingerprint,
        _array=array,
    )


def _memory_fingerprint(value: Any) -> dict[str, Any]:
    digest = hashlib.sha256()
    if isinstance(value, torch.Tensor):
        arr = value.detach().cpu().contiguous().numpy()
    else:
        arr = np.ascontiguousarray(value)
    digest.update(str((arr.dtype.str, arr.shape)).encode())
    digest.update(arr.reshape(-1).view(np.uint8).tobytes())
    return {"memory_sha256": digest.hexdigest()}


def _parquet(caller: str, files: list[Path], source: str) -> Pool:
    from dropkit.score.parquet import open_parquet

    opened = open_parquet(caller, files, source)
    return Pool(
        kind=opened.kind,
        n_rows=opened.n_rows,
        row_shape=opened.row_shape,
        source=source,
        fingerprint=opened.fingerprint,
        _ids=opened.ids,
        _files=opened.files,
        _columns=opened.columns,
    )


def open_pool(pool: Any, caller: str = "score_pool") -> Pool:
    """Open and check a pool (see the module docstring for the formats).

    Args:
        pool: A path, folder or glob (``str`` / ``Path``), or a tensor / array.
        caller: Caller named in errors.

    Returns:
        The :class:`Pool`.

    Raises:
        FileNotFoundError: If nothing exists at the path or the glob matches
            nothing.
        ValueError: For an unreadable file, an unknown suffix, a non-numeric
            column, rows of mixed shapes, duplicate row ids or an empty pool.
        TypeError: For an object that is not a path, tensor or array.
    """
    if isinstance(pool, (torch.Tensor, np.ndarray)):
        return _from_tensor(caller, pool, "<in-memory pool>", _memory_fingerprint(pool))
    if not isinstance(pool, (str, os.PathLike)):
        raise TypeError(
            f"{caller}: expected a pool path (.npy, .pt, .txt, Parquet file, folder or glob) or "
            f"a tensor, but got {type(pool).__name__}. Pass e.g. 'pool.npy'."
        )
    text = os.fspath(pool)
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(os.path.expanduser(text)) if Path(p).is_file())
        if not files:
            raise FileNotFoundError(
                f"{caller}: expected Parquet files matching the pool glob, but got {text!r}, "
                "which matches nothing. Check the pattern."
            )
        return _parquet(caller, files, text)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise FileNotFoundError(
                f"{caller}: expected *.parquet files in the pool folder, but got {text!r} with "
                "none. Pass a folder of Parquet files, or a .npy / .pt / .txt file."
            )
        return _parquet(caller, files, text)
    if not path.is_file():
        raise FileNotFoundError(
            f"{caller}: expected an existing pool file, folder or glob, but got {text!r}, which "
            "does not exist. Check the path."
        )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise _bad(
                caller,
                f"a numpy array saved with numpy.save in {text!r}",
                repr(str(exc)),
                "Re-save it.",
            ) from None
        return _from_tensor(caller, array, text, _stat(path))
    if suffix == ".pt":
        try:
            value = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise _bad(
                caller, f"a tensor saved with torch.save in {text!r}", repr(str(exc)), "Re-save it."
            ) from None
        return _from_tensor(caller, value, text, _stat(path))
    if suffix == ".txt":
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise _bad(
                caller, f"UTF-8 text in {text!r}", repr(str(exc)), "Re-save it as UTF-8."
            ) from None
        kept = [(i, t.strip()) for i, t in enumerate(lines) if t.strip()]
        if not kept:
            raise _bad(caller, f"one text per line in {text!r}", "no text", "Add lines of text.")
        return Pool(
            kind="text",
            n_rows=len(kept),
            row_shape=(),
            source=text,
            fingerprint=_stat(path),
            _texts=[t for _, t in kept],
            _ids=np.asarray([i for i, _ in kept], dtype=np.int64),
        )
    if suffix == ".parquet":
        return _parquet(caller, [path], text)
    raise _bad(
        caller,
        "a pool ending in .npy, .pt, .txt or .parquet (or a folder / glob of Parquet files)",
        repr(path.name),
        "Convert it, e.g. numpy.save('pool.npy', x).",
    )


def batch_from_columns(
    batch: dict[str, np.ndarray], columns: list[str] | None, caller: str
) -> torch.Tensor | list[str]:
    """Rows of a Ray Data numpy batch: one tensor / text column, or numeric columns stacked."""
    names = columns or [c for c in batch if c != ID_COLUMN]
    if len(names) == 1:
        col = batch[names[0]]
        if col.dtype.kind in "OUS":
            if all(isinstance(v, str) for v in col):
                return [str(v) for v in col]
            try:
                col = np.stack([np.asarray(v) for v in col])
            except ValueError:
                raise _bad(
                    caller, f"rows of one shape in column {names[0]!r}", "mixed shapes", "Pad them."
                ) from None
        if col.dtype.kind not in "biuf":
            raise _bad(
                caller, f"a numeric column {names[0]!r}", f"dtype {col.dtype}", "Store numbers."
            )
        return _as_float(torch.from_numpy(np.array(col)))
    for n in names:
        if batch[n].dtype.kind not in "biuf":
            raise _bad(
                caller, "numeric columns", f"column {n!r} of dtype {batch[n].dtype}", "Drop it."
            )
    return _as_float(torch.from_numpy(np.stack([np.array(batch[n]) for n in names], axis=1)))

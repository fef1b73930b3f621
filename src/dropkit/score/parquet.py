"""Parquet pools: a file, a folder or a glob of files read as one table of rows.

Rows are one list column (a tensor per row, every row the same length),
numeric columns (one value each, in schema order) or one string column
(texts); an integer ``row_id`` column, if present, gives the row ids. Files
are checked when opened (same columns, numeric types, one row length, unique
ids) and read by row groups, so memory follows the block, not the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dropkit._optional import require
from dropkit.score._common import ID_COLUMN, _bad, _stat


def _pyarrow(caller: str) -> Any:
    require("pyarrow", "ray", caller)
    import pyarrow.parquet as pq

    return pq


def _read_rows(f: Any, lo: int, hi: int, columns: list[str]) -> Any:
    import pyarrow as pa

    groups, first, offset = [], None, 0
    for g in range(f.metadata.num_row_groups):
        n = f.metadata.row_group(g).num_rows
        if offset + n > lo and offset < hi:
            groups.append(g)
            first = offset if first is None else first
        offset += n
    if not groups:
        return pa.table({c: pa.array([]) for c in columns})
    table = f.read_row_groups(groups, columns=columns)
    assert first is not None
    return table.slice(lo - first, hi - lo)


def table_matrix(table: Any, columns: list[str], row_shape: tuple[int, ...]) -> np.ndarray:
    """The rows of a table as one array ``(n, *row_shape)``."""
    if len(columns) == 1 and row_shape and _is_list(table.schema.field(columns[0]).type):
        col = table.column(columns[0]).combine_chunks()
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(table), *row_shape)
    return np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in columns], axis=1)


def _is_list(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _is_numeric(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _is_text(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _check_ids(caller: str, ids: np.ndarray, source: str) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        raise _bad(
            caller,
            f"unique integers in the {ID_COLUMN!r} column of {source!r}",
            f"{int(uniq[counts > 1][0])} {int(counts.max())} times",
            "Give every row its own id, or drop the column to number rows by position.",
        )


@dataclass
class ParquetFiles:
    """Parquet files opened and checked as one pool (``pool`` builds its ``Pool`` from this).

    Attributes:
        kind: ``"tensor"`` or ``"text"``.
        n_rows: Number of rows over all files.
        row_shape: Shape of one row (tensor pools).
        fingerprint: Paths with sizes and mtimes, and the input columns.
        ids: The ``row_id`` column, or None (row id = position).
        files: The open ``pyarrow.parquet.ParquetFile`` objects, in order.
        columns: The input columns (every column but ``row_id``).
    """

    kind: str
    n_rows: int
    row_shape: tuple[int, ...]
    fingerprint: dict[str, Any]
    ids: np.ndarray | None
    files: list[Any]
    columns: list[str]


def open_parquet(caller: str, paths: list[Path], source: str) -> ParquetFiles:
    """Open and check Parquet files as one pool (see :class:`ParquetFiles`).

    Raises:
        ValueError: For an unreadable file, files with other columns, a
            non-numeric column, rows of mixed lengths or duplicate row ids.
    """
    pq = _pyarrow(caller)
    files = []
    for p in paths:
        try:
            files.append(pq.ParquetFile(p))
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise _bad(
                caller, f"a readable Parquet file in {str(p)!r}", repr(str(exc)), "Re-write it."
            ) from None
    schema = files[0].schema_arrow
    for p, f in zip(paths[1:], files[1:]):
        if f.schema_arrow.names != schema.names:
            raise _bad(
                caller,
                f"the columns {schema.names} in every file of {source!r}",
                f"{f.schema_arrow.names} in {p.name!r}",
                "Write every file with the same columns (rows of one shape).",
            )
    names = [n for n in schema.names if n != ID_COLUMN]
    types = {n: schema.field(n).type for n in names}
    if not names:
        raise _bad(caller, f"input columns in {source!r}", f"only {schema.names}", "Add columns.")
    texts = [n for n in names if _is_text(types[n])]
    lists = [n for n in names if _is_list(types[n])]
    row_shape: tuple[int, ...] = ()
    if texts and len(names) == 1:
        kind = "text"
    elif lists and len(names) == 1:
        value_type = types[lists[0]].value_type
        if not _is_numeric(value_type):
            raise _bad(
                caller,
                f"numeric columns in {source!r}",
                f"column {lists[0]!r} of type {types[lists[0]]} (not numeric)",
                "Store numbers, one list of numbers per row.",
            )
        kind, row_shape = "tensor", (_list_length(caller, paths, files, lists[0], source),)
    else:
        for n in names:
            if not _is_numeric(types[n]):
                raise _bad(
                    caller,
                    f"numeric columns in {source!r}",
                    f"column {n!r} of type {types[n]} (not numeric)",
                    "Drop or encode that column; a text pool has one string column only.",
                )
        kind, row_shape = "tensor", (len(names),)
    n_rows = sum(f.metadata.num_rows for f in files)
    if n_rows == 0:
        raise _bad(caller, f"at least one row in {source!r}", "0 rows", "Write rows.")
    ids = None
    if ID_COLUMN in schema.names:
        import pyarrow as pa

        if not pa.types.is_integer(schema.field(ID_COLUMN).type):
            raise _bad(
                caller,
                f"integers in the {ID_COLUMN!r} column of {source!r}",
                f"type {schema.field(ID_COLUMN).type}",
                "Store row ids as int64.",
            )
        ids = np.concatenate(
            [f.read(columns=[ID_COLUMN]).column(0).to_numpy() for f in files]
        ).astype(np.int64)
        _check_ids(caller, ids, source)
    return ParquetFiles(
        kind=kind,
        n_rows=n_rows,
        row_shape=row_shape,
        fingerprint={"files": [_stat(p) for p in paths], "columns": names},
        ids=ids,
        files=files,
        columns=names,
    )


def _list_length(caller: str, paths: list[Path], files: list[Any], column: str, source: str) -> int:
    """The one length of every row of a list column (streamed), or ValueError."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = files[0].schema_arrow.field(column).type
    if pa.types.is_fixed_size_list(t):
        return int(t.list_size)
    length: int | None = None
    position = 0
    for p, f in zip(paths, files):
        for batch in f.iter_batches(columns=[column], batch_size=65_536):
            lengths = pc.list_value_length(batch.column(0)).to_numpy(zero_copy_only=False)
            if length is None and lengths.size:
                length = int(lengths[0])
            bad = np.flatnonzero(lengths != length)
            if bad.size:
                raise _bad(
                    caller,
                    f"rows of one shape in column {column!r} of {source!r} ({length} values)",
                    f"{lengths[bad[0]]} values at row {position + int(bad[0])} ({p.name})",
                    "Pad or crop every row to one length (rows of mixed shapes).",
                )
            position += len(lengths)
    return int(length or 0)


def read_range(files: list[Any], columns: list[str], start: int, stop: int) -> Any:
    """Rows ``[start, stop)`` (positions over all files, in order) as one table."""
    import pyarrow as pa

    pieces = []
    offset = 0
    for f in files:
        n = f.metadata.num_rows
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        if lo < hi:
            pieces.append(_read_rows(f, lo, hi, columns))
        offset += n
        if offset >= stop:
            break
    return pa.concat_tables(pieces)

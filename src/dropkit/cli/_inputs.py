"""Reading ``dropkit predict --input``: texts, ``.npy`` / ``.pt`` tensors, CSV numbers.

Inputs (``--input``):

* an existing ``.txt`` file: one text per line, tokenised by the model
  folder's tokenizer; ``index`` is the 0-based line number in the file, and a
  blank (or whitespace-only) line gets no record but keeps the numbering;
* an existing ``.npy`` file (``numpy.save``) or ``.pt`` file (``torch.save`` of
  one tensor): a batch laid out ``(N, ...)``; integer tensors given to a Hugging
  Face model are token ids ``(N, L)``;
* an existing ``.csv`` file: numbers, one input per row, comma-separated.
  Every row that parses as numbers is an input (``4.9e-01``, ``nan`` and
  ``inf`` are numbers); only a first row that does not parse is taken as a
  header of column names, and a note on stderr says so. Any other row that
  does not parse is an error naming its row and column;
* anything else that does not look like a path: a single text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dropkit._validation import _fail

SUFFIXES = (".txt", ".npy", ".pt", ".csv")


@dataclass
class Inputs:
    """Parsed ``--input``: either texts or one tensor ``(N, ...)``.

    Attributes:
        texts: The texts, without blank lines.
        tensor: The batch ``(N, ...)``.
        indices: The ``index`` reported for each input (line numbers of a text
            file, which skip blank lines); ``range(N)`` when None.
        notes: Facts worth telling the user (e.g. a CSV header was skipped).
    """

    texts: list[str] | None = None
    tensor: torch.Tensor | None = None
    indices: list[int] | None = None
    notes: list[str] = field(default_factory=list)

    def index(self, k: int) -> int:
        """The reported ``index`` of the ``k``-th input."""
        return k if self.indices is None else self.indices[k]

    def __len__(self) -> int:
        if self.texts is not None:
            return len(self.texts)
        assert self.tensor is not None
        return int(self.tensor.shape[0])


class _Said(str):
    """A value already put in words (``"an empty file"``): shown as written, not quoted."""

    def __repr__(self) -> str:
        return str(self)


def _malformed(caller: str, path: Path, what: str, got: str, fix: str) -> ValueError:
    return _fail(ValueError, caller, f"{what} in {str(path)!r}", _Said(got), fix)


def read_inputs(source: str, caller: str = "dropkit predict") -> Inputs:
    """Parse the ``--input`` argument (see the module docstring).

    Args:
        source: A file path or a text.
        caller: Command name used in error messages.

    Returns:
        The :class:`Inputs`.

    Raises:
        FileNotFoundError: For a path (or ``*.txt/.npy/.pt/.csv`` name) that
            does not exist.
        ValueError: For a malformed or empty file, or an unknown suffix.
    """
    path = Path(source).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".txt":
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            kept = [(i, t) for i, t in enumerate(lines) if t]
            if not kept:
                raise _malformed(caller, path, "one text per line", "an empty file", "Add text.")
            return Inputs(texts=[t for _, t in kept], indices=[i for i, _ in kept])
        if suffix == ".csv":
            rows, notes = _read_csv(caller, path)
            return Inputs(tensor=_check_tensor(caller, path, rows), notes=notes)
        if suffix in (".npy", ".pt"):
            return Inputs(tensor=_check_tensor(caller, path, _load_tensor(caller, path, suffix)))
        raise ValueError(
            f"{caller}: expected an input file ending in {', '.join(SUFFIXES)}, but got "
            f"{path.name!r}. Convert it, or pass a text directly."
        )
    if path.suffix.lower() in SUFFIXES or "/" in source or source.startswith(("./", "~")):
        raise FileNotFoundError(
            f"{caller}: expected an existing input file, but got {source!r}, which does not "
            "exist. Check the path (texts containing '/' must come from a .txt file)."
        )
    if not source.strip():
        raise ValueError(f"{caller}: expected a non-empty text, but got {source!r}. Pass a text.")
    return Inputs(texts=[source])


def _load_tensor(caller: str, path: Path, suffix: str) -> Any:
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise _malformed(
                caller, path, "a numpy array saved with numpy.save", repr(str(exc)), "Re-save it."
            ) from exc
    if suffix == ".pt":
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise _malformed(
                caller, path, "a tensor saved with torch.save", repr(str(exc)), "Re-save it."
            ) from exc
    raise AssertionError(suffix)  # pragma: no cover - read_inputs routes .csv to _read_csv


def _numbers(cells: list[str]) -> list[float] | int:
    """The row as floats, or the 0-based column of the first cell that is not a number."""
    out = []
    for col, cell in enumerate(cells):
        try:
            out.append(float(cell))
        except ValueError:
            return col
    return out


def _read_csv(caller: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """Rows of numbers; a first row that does not parse is a header (see the module doc)."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    rows = [(n, [c.strip() for c in line.split(",")]) for n, line in enumerate(lines, 1)]
    rows = [(n, cells) for n, cells in rows if any(cells)]  # blank lines carry no row
    notes: list[str] = []
    header = None
    if rows and isinstance(_numbers(rows[0][1]), int) and len(rows) > 1:
        header = rows.pop(0)
        notes.append(
            f"{path.name}: row 1 ({','.join(header[1])!r}) is not numbers; "
            "read it as a header of column names."
        )
    values: list[list[float]] = []
    for n, cells in rows:
        parsed = _numbers(cells)
        if isinstance(parsed, int):
            fix = (
                "A single row is read as data, not as a header: add the data rows."
                if header is None and len(rows) == 1
                else "Fix that cell (numbers only; a header is allowed on row 1 only)."
            )
            raise _malformed(
                caller,
                path,
                "comma-separated numbers",
                f"{cells[parsed]!r} at row {n}, column {parsed + 1}",
                fix,
            )
        if values and len(parsed) != len(values[0]):
            raise _malformed(
                caller,
                path,
                f"{len(values[0])} numbers on every row",
                f"{len(parsed)} at row {n}",
                "Give every row the same columns.",
            )
        values.append(parsed)
    if not values:
        raise _malformed(caller, path, "comma-separated numbers", "no data row", "Add rows.")
    return np.asarray(values, dtype=np.float64), notes


def _check_tensor(caller: str, path: Path, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise _malformed(
                caller, path, "a numeric array", f"dtype {value.dtype}", "Save numbers."
            )
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise _malformed(
            caller, path, "one tensor", type(value).__name__, "torch.save(tensor, path)."
        )
    if value.dim() == 0 or value.shape[0] == 0:
        raise _malformed(
            caller, path, "a batch laid out (N, ...)", f"shape {tuple(value.shape)}", "Add inputs."
        )
    if value.is_floating_point():
        if not torch.isfinite(value).all():
            raise _malformed(caller, path, "finite numbers", "NaN or inf", "Clean the data.")
        value = value.float()
    return value

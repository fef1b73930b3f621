"""``dropkit predict``: MC-dropout predictions with uncertainty as JSON lines.

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

Each output line is one JSON object per input: ``index`` (0-based position
in the batch, the row of a CSV not counting its header, or the line of a text
file), ``prediction``,
``label`` (from the model config when it has one), ``probs`` (mean predictive
probabilities; MC samples are averaged as probabilities, never as logits),
``predictive_entropy``, ``expected_entropy``, ``mutual_information`` (BALD;
Houlsby et al., 2011), ``variation_ratio`` and ``samples_used``. For
``--output regression`` the fields are ``mean`` and ``std``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dropkit._optional import require
from dropkit.report.loading import LoadedModel

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


def _malformed(caller: str, path: Path, what: str, got: Any, fix: str) -> ValueError:
    return ValueError(f"{caller}: expected {what} in {str(path)!r}, but got {got}. {fix}")


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


def _batches(loaded: LoadedModel, inputs: Inputs, batch_size: int, caller: str) -> Iterator[Any]:
    n = len(inputs)
    if inputs.texts is not None:
        if loaded.folder is None:
            raise ValueError(
                f"{caller}: expected a Hugging Face model folder for text inputs, but got "
                f"{loaded.name!r} ({loaded.source}). Pass tensors (.npy/.pt/.csv) instead."
            )
        transformers = require("transformers", "hf", caller)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(loaded.folder), local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{caller}: expected a tokenizer in {str(loaded.folder)!r}, but loading it "
                f"failed ({exc}). Save one with tokenizer.save_pretrained(folder)."
            ) from exc
        for i in range(0, n, batch_size):
            chunk = inputs.texts[i : i + batch_size]
            yield dict(tokenizer(chunk, padding=True, truncation=True, return_tensors="pt"))
        return
    assert inputs.tensor is not None
    x = inputs.tensor
    if loaded.source == "huggingface":
        if x.is_floating_point() or x.dim() != 2:
            raise ValueError(
                f"{caller}: expected token ids (integers, shape (N, L)) for a Hugging Face "
                f"model, but got {x.dtype} of shape {tuple(x.shape)}. Pass texts or token ids."
            )
        for i in range(0, n, batch_size):
            ids = x[i : i + batch_size].long()
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return
    for i in range(0, n, batch_size):
        yield x[i : i + batch_size]


def _round(values: torch.Tensor) -> Any:
    out = [round(float(v), 6) for v in values.reshape(-1).tolist()]
    return out if values.dim() > 0 else out[0]


def _labels(model: Any) -> dict[int, str]:
    config = getattr(model, "config", None)
    raw = getattr(config, "id2label", None) or {}
    return {int(k): str(v) for k, v in raw.items()}


def predict_lines(
    loaded: LoadedModel,
    inputs: Inputs,
    *,
    samples: int,
    sites: str | None = None,
    output: str = "logits",
    batch_size: int = 32,
    progress: bool = False,
    seed: int | None = None,
    caller: str = "dropkit predict",
) -> Iterator[dict[str, Any]]:
    """Run MC dropout over ``inputs`` batch by batch and yield one record per input.

    Args:
        loaded: The model, from :func:`dropkit.report.loading.load_model`.
        inputs: Parsed inputs, from :func:`read_inputs`.
        samples: MC samples per input.
        sites: Restrict MC to these sites (``"head"`` for the classifier head).
        output: What the model returns: ``"logits"``, ``"probs"`` or ``"regression"``.
        batch_size: Inputs per forward.
        progress: Show a progress bar on stderr.
        seed: Seed of the dropout masks, for reproducible output.
        caller: Command name used in error messages.

    Yields:
        One JSON-ready dict per input (fields in the module docstring).
    """
    from dropkit.uncertainty import mc_predict

    labels = _labels(loaded.model)
    bar = None
    if progress:
        tqdm = require("tqdm", "report", caller).tqdm
        bar = tqdm(total=len(inputs), unit="input", desc="MC dropout", leave=False)
    position = 0
    kwargs: dict[str, Any] = {"samples": samples, "output": output, "progress": False}
    if seed is not None:
        kwargs["seed"] = seed
    if sites is not None:
        kwargs["sites"] = sites
    try:
        for batch in _batches(loaded, inputs, batch_size, caller):
            result = mc_predict(loaded.model, batch, **kwargs)
            for k in range(result.mean.shape[0]):
                yield _record(result, k, inputs.index(position), labels)
                position += 1
            if bar is not None:
                bar.update(result.mean.shape[0])
    finally:
        if bar is not None:
            bar.close()


def _record(result: Any, k: int, index: int, labels: dict[int, str]) -> dict[str, Any]:
    rec: dict[str, Any] = {"index": index}
    if result.task == "regression":
        rec["mean"] = _round(result.mean[k])
        rec["std"] = _round(result.std[k])
    else:
        probs = result.mean[k]
        pred = int(probs.argmax())
        rec["prediction"] = pred
        if pred in labels:
            rec["label"] = labels[pred]
        rec["probs"] = _round(probs)
        for name in (
            "predictive_entropy",
            "expected_entropy",
            "mutual_information",
            "variation_ratio",
        ):
            value = getattr(result, name)
            rec[name] = None if value is None else _round(value[k])
    rec["samples_used"] = int(result.samples_used[k])
    for key, value in rec.items():
        if isinstance(value, float) and not math.isfinite(value):
            rec[key] = None
    return rec

"""``dropkit predict``: MC-dropout predictions with uncertainty as JSON lines.

Inputs (``--input``):

* an existing ``.txt`` file: one text per line (blank lines skipped), tokenised
  by the model folder's tokenizer;
* an existing ``.npy`` file (``numpy.save``) or ``.pt`` file (``torch.save`` of
  one tensor): a batch laid out ``(N, ...)``; integer tensors given to a Hugging
  Face model are token ids ``(N, L)``;
* an existing ``.csv`` file: numbers only, one input per row, comma-separated
  (one header row of column names is skipped);
* anything else that does not look like a path: a single text.

Each output line is one JSON object per input: ``index``, ``prediction``,
``label`` (from the model config when it has one), ``probs`` (mean predictive
probabilities; MC samples are averaged as probabilities, never as logits),
``predictive_entropy``, ``expected_entropy``, ``mutual_information`` (BALD;
Houlsby et al., 2011), ``variation_ratio`` and ``samples_used``. For
``--output regression`` the fields are ``mean`` and ``std``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dropkit.integrations._extras import require
from dropkit.report.loading import LoadedModel

SUFFIXES = (".txt", ".npy", ".pt", ".csv")


@dataclass
class Inputs:
    """Parsed ``--input``: either texts or one tensor ``(N, ...)``."""

    texts: list[str] | None = None
    tensor: torch.Tensor | None = None

    def __len__(self) -> int:
        if self.texts is not None:
            return len(self.texts)
        assert self.tensor is not None
        return int(self.tensor.shape[0])


def _malformed(where: str, path: Path, what: str, got: Any, fix: str) -> ValueError:
    return ValueError(f"{where}: expected {what} in {str(path)!r}, but got {got}. {fix}")


def read_inputs(source: str, where: str = "dropkit predict") -> Inputs:
    """Parse the ``--input`` argument (see the module docstring).

    Args:
        source: A file path or a text.
        where: Command name used in error messages.

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
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            texts = [t for t in texts if t]
            if not texts:
                raise _malformed(where, path, "one text per line", "an empty file", "Add text.")
            return Inputs(texts=texts)
        if suffix in (".npy", ".pt", ".csv"):
            return Inputs(tensor=_check_tensor(where, path, _load_tensor(where, path, suffix)))
        raise ValueError(
            f"{where}: expected an input file ending in {', '.join(SUFFIXES)}, but got "
            f"{path.name!r}. Convert it, or pass a text directly."
        )
    if path.suffix.lower() in SUFFIXES or "/" in source or source.startswith(("./", "~")):
        raise FileNotFoundError(
            f"{where}: expected an existing input file, but got {source!r}, which does not "
            "exist. Check the path (texts containing '/' must come from a .txt file)."
        )
    if not source.strip():
        raise ValueError(f"{where}: expected a non-empty text, but got {source!r}. Pass a text.")
    return Inputs(texts=[source])


def _load_tensor(where: str, path: Path, suffix: str) -> Any:
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise _malformed(
                where, path, "a numpy array saved with numpy.save", repr(str(exc)), "Re-save it."
            ) from exc
    if suffix == ".pt":
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise _malformed(
                where, path, "a tensor saved with torch.save", repr(str(exc)), "Re-save it."
            ) from exc
    lines = path.read_text(encoding="utf-8").splitlines()
    # one header row of column names is allowed
    skip = 1 if lines and any(c.isalpha() for c in lines[0]) else 0
    try:
        return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64, skiprows=skip)
    except ValueError as exc:
        raise _malformed(
            where, path, "comma-separated numbers", repr(str(exc)), "Fix the offending row."
        ) from exc


def _check_tensor(where: str, path: Path, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise _malformed(
                where, path, "a numeric array", f"dtype {value.dtype}", "Save numbers."
            )
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise _malformed(
            where, path, "one tensor", type(value).__name__, "torch.save(tensor, path)."
        )
    if value.dim() == 0 or value.shape[0] == 0:
        raise _malformed(
            where, path, "a batch laid out (N, ...)", f"shape {tuple(value.shape)}", "Add inputs."
        )
    if value.is_floating_point():
        if not torch.isfinite(value).all():
            raise _malformed(where, path, "finite numbers", "NaN or inf", "Clean the data.")
        value = value.float()
    return value


def _batches(loaded: LoadedModel, inputs: Inputs, batch_size: int, where: str) -> Iterator[Any]:
    n = len(inputs)
    if inputs.texts is not None:
        if loaded.folder is None:
            raise ValueError(
                f"{where}: expected a Hugging Face model folder for text inputs, but got "
                f"{loaded.name!r} ({loaded.source}). Pass tensors (.npy/.pt/.csv) instead."
            )
        transformers = require("transformers", "hf", where)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(loaded.folder), local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{where}: expected a tokenizer in {str(loaded.folder)!r}, but loading it "
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
                f"{where}: expected token ids (integers, shape (N, L)) for a Hugging Face "
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
    where: str = "dropkit predict",
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
        where: Command name used in error messages.

    Yields:
        One JSON-ready dict per input (fields in the module docstring).
    """
    from dropkit.uncertainty import mc_predict

    labels = _labels(loaded.model)
    bar = None
    if progress:
        tqdm = require("tqdm", "report", where).tqdm
        bar = tqdm(total=len(inputs), unit="input", desc="MC dropout", leave=False)
    index = 0
    kwargs: dict[str, Any] = {"samples": samples, "output": output, "progress": False}
    if seed is not None:
        kwargs["seed"] = seed
    if sites is not None:
        kwargs["sites"] = sites
    try:
        for batch in _batches(loaded, inputs, batch_size, where):
            result = mc_predict(loaded.model, batch, **kwargs)
            for k in range(result.mean.shape[0]):
                yield _record(result, k, index, labels)
                index += 1
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

"""Score one block of rows with MC dropout: :func:`score_rows`.

Every engine (one process, Ray tasks, Ray Data) scores a block through this
function, which calls :func:`dropkit.mc_predict` with ``row_ids=`` the rows'
ids and a fixed ``seed``: a row's masks depend only on ``(seed, sample, row
id)``, so its scores are the same whichever block, worker or batch holds it
(masks exactly; outputs up to float rounding of matrix products of other
shapes).

Output columns (per row): ``row_id``; classification: ``prediction``,
``probs`` (mean of the sample probabilities, ``(C,)``), ``predictive_entropy``,
``expected_entropy``, ``mutual_information`` (BALD), ``variation_ratio``;
regression: ``mean``, ``epistemic_var`` and, when known (``tau`` or a
heteroscedastic head), ``aleatoric_var`` (one value per row when the model
returns one, else a list).

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
    Houlsby et al., "Bayesian Active Learning for Classification and
    Preference Learning" (BALD), arXiv:1112.5745, 2011.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

CLASSIFICATION = (
    "prediction",
    "probs",
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "variation_ratio",
)
REGRESSION = ("mean", "epistemic_var", "aleatoric_var")


@dataclass(frozen=True)
class ScoreSettings:
    """What decides a row's scores (recorded in the run manifest).

    Attributes:
        samples: MC samples ``T`` per row.
        seed: Base seed of the masks.
        sites: Which dropout sites drop (``None``: all; ``"head"``; ...).
        output: ``"logits"``, ``"probs"`` or ``"regression"``.
        batch_size: Rows per forward (speed only).
        tau: Regression noise precision (``aleatoric_var = 1 / tau``).
        heteroscedastic: The regression head returns a mean and a log-variance.
        columns: Input columns of a Ray Data batch (default: all but the ids).
        id_column: Row-id column of a Ray Data batch.
        tokenizer: Zero-argument callable returning a tokenizer (Ray Data text
            columns).
    """

    samples: int = 20
    seed: int = 0
    sites: Any = None
    output: str = "logits"
    batch_size: int = 256
    tau: float | None = None
    heteroscedastic: bool = False
    columns: list[str] | None = None
    id_column: str = "row_id"
    tokenizer: Any = None

    def __post_init__(self) -> None:
        where = "score_pool"
        for name in ("samples", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(
                    f"{where}: expected {name} >= 1 (an int), but got {value!r}. Pass e.g. "
                    f"{name}={20 if name == 'samples' else 256}."
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise TypeError(
                f"{where}: expected seed to be an int, but got {self.seed!r}. Pass seed=0 "
                "(a fixed seed is what makes scores reproducible and resumable)."
            )
        if self.output not in ("logits", "probs", "regression"):
            raise ValueError(
                f"{where}: expected output one of 'logits', 'probs', 'regression', but got "
                f"{self.output!r}. Say what the model returns."
            )

    def manifest(self) -> dict[str, Any]:
        """The settings that decide the numbers, as JSON-ready data."""
        out = asdict(self)
        for key in ("batch_size", "columns", "id_column", "tokenizer"):
            out.pop(key)
        out["sites"] = None if self.sites is None else repr(self.sites)
        return out


@dataclass
class BlockScores:
    """Scores of one block of rows.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        row_id: Row ids ``(n,)`` int64.
        values: Column name -> array ``(n,)`` or ``(n, C)``.
    """

    task: str
    row_id: np.ndarray
    values: dict[str, np.ndarray]

    def columns(self) -> dict[str, np.ndarray]:
        """``row_id`` first, then the score columns."""
        return {"row_id": self.row_id, **self.values}

    def to_arrow(self) -> Any:
        """The block as a ``pyarrow.Table`` (2-D arrays become fixed-size lists)."""
        import pyarrow as pa

        arrays, names = [], []
        for name, value in self.columns().items():
            if value.ndim == 2:
                flat = pa.array(value.reshape(-1))
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, value.shape[1]))
            else:
                arrays.append(pa.array(value))
            names.append(name)
        return pa.table(arrays, names=names)


def _batches(model: Any, rows: Any, batch_size: int, tokenizer: Any) -> Iterator[Any]:
    if isinstance(rows, list):
        if tokenizer is None:
            raise ValueError(
                "score_pool: expected a tokenizer for a text pool, but got tokenizer=None. "
                "Pass tokenizer= (e.g. AutoTokenizer.from_pretrained(folder)), or score tensors."
            )
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            yield dict(tokenizer(chunk, padding=True, truncation=True, return_tensors="pt"))
        return
    hf = getattr(model, "config", None) is not None and hasattr(model, "base_model")
    dtype = next((q.dtype for q in model.parameters() if q.is_floating_point()), torch.float32)
    for i in range(0, rows.shape[0], batch_size):
        x = rows[i : i + batch_size]
        if x.is_floating_point():
            x = x.to(dtype)  # a float32 model scores a float64 .npy pool as float32
        if hf and not x.is_floating_point():  # token ids (N, L) for a Hugging Face model
            ids = x.long()
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        else:
            yield x


def _flat(value: torch.Tensor) -> np.ndarray:
    arr = value.detach().double().numpy()
    if arr.ndim > 1 and int(np.prod(arr.shape[1:])) == 1:
        return arr.reshape(-1)
    return arr.reshape(arr.shape[0], -1) if arr.ndim > 2 else arr


def score_rows(
    model: Any, rows: Any, row_ids: np.ndarray, settings: ScoreSettings, tokenizer: Any = None
) -> BlockScores:
    """MC-dropout scores of ``rows`` with masks keyed by ``row_ids``.

    Args:
        model: The ``nn.Module``.
        rows: A tensor ``(n, ...)`` or a list of texts.
        row_ids: One unique integer id per row ``(n,)``.
        settings: Samples, seed, sites, output, batch size.
        tokenizer: Tokenizer for texts (a Hugging Face tokenizer).

    Shape:
        - rows: ``(n, ...)``; every output column ``(n,)`` or ``(n, C)``.

    Returns:
        The :class:`BlockScores`.
    """
    from dropkit.uncertainty import mc_predict

    ids = np.asarray(row_ids, dtype=np.int64)
    kwargs: dict[str, Any] = {}
    if settings.output == "regression":
        kwargs = {"tau": settings.tau, "heteroscedastic": settings.heteroscedastic}
    result = mc_predict(
        model,
        list(_batches(model, rows, settings.batch_size, tokenizer)),
        samples=settings.samples,
        output=settings.output,
        sites=settings.sites,
        seed=int(settings.seed),
        row_ids=torch.from_numpy(ids),
        progress=False,
        **kwargs,
    )
    if result.task == "regression":
        values = {"mean": _flat(result.mean)}
        assert result.epistemic_var is not None
        values["epistemic_var"] = _flat(result.epistemic_var)
        if result.aleatoric_var is not None:
            values["aleatoric_var"] = _flat(result.aleatoric_var.expand_as(result.mean))
        return BlockScores("regression", ids, values)
    probs = result.mean.detach()
    values = {
        "prediction": probs.argmax(-1).numpy().astype(np.int64),
        "probs": probs.double().numpy(),
    }
    for name in CLASSIFICATION[2:]:
        value = getattr(result, name)
        values[name] = value.detach().double().numpy()
    return BlockScores("classification", ids, values)

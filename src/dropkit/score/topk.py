"""Top-K over a scored pool: per-block top-K, then a merge.

Rows are ranked by score, highest first; **ties go to the smaller row id**.
That order is total, so the top ``K`` of every block, merged and cut to ``K``
again, is exactly the top ``K`` of the whole score table, in any block size
and any order the blocks finish.

Acquisitions (Houlsby et al. 2011; Gal, Islam and Ghahramani 2017):
``bald`` (mutual information), ``entropy`` (predictive entropy),
``variation_ratio``, ``margin`` (``1 - (p_(1) - p_(2))``, the smallest margin
first) and ``batch_bald``. BatchBALD (Kirsch et al. 2019) needs joint samples
(one set of masks for all rows of a sample), which row-keyed masks are not:
it rescores a candidate set, the top ``M`` rows by BALD (``M = max(4 K,
K + 100)`` by default, capped at the pool), on one worker with
``consistent_masks=True`` and picks ``K`` greedily among them
(:func:`dropkit.active.batch_bald.batch_bald`).

References:
    Houlsby et al., "Bayesian Active Learning for Classification and
    Preference Learning", arXiv:1112.5745, 2011.
    Gal, Islam and Ghahramani, "Deep Bayesian Active Learning with Image
    Data", ICML 2017.
    Kirsch, van Amersfoort and Gal, "BatchBALD", NeurIPS 2019.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ACQUIRE = ("bald", "entropy", "margin", "variation_ratio", "batch_bald")
_COLUMN = {
    "bald": "mutual_information",
    "batch_bald": "mutual_information",
    "entropy": "predictive_entropy",
    "variation_ratio": "variation_ratio",
    "margin": "probs",
}


@dataclass
class Ranked:
    """Top rows of a pool, best first.

    Attributes:
        row_id: Row ids ``(K,)`` int64.
        score: Their acquisition scores ``(K,)`` float64 (BatchBALD: the joint
            mutual information of the first ``i + 1`` chosen rows).
    """

    row_id: np.ndarray
    score: np.ndarray

    def to_arrow(self) -> Any:
        """``rank``, ``row_id``, ``score`` as a ``pyarrow.Table``."""
        import pyarrow as pa

        return pa.table(
            {
                "rank": np.arange(1, self.row_id.size + 1, dtype=np.int64),
                "row_id": self.row_id,
                "score": self.score,
            }
        )


def column_for(acquire: str) -> str:
    """The score column an acquisition reads."""
    return _COLUMN[acquire]


def scores_of(acquire: str, table: Any) -> np.ndarray:
    """Acquisition scores ``(n,)`` float64 of a block table (pyarrow)."""
    col = table.column(column_for(acquire))
    if acquire != "margin":
        return np.asarray(col.to_numpy(), dtype=np.float64)
    probs = np.asarray(col.combine_chunks().flatten().to_numpy(), dtype=np.float64)
    probs = probs.reshape(len(table), -1)
    if probs.shape[1] < 2:
        return np.ones(len(table))
    top = -np.sort(-probs, axis=1)[:, :2]
    return 1.0 - (top[:, 0] - top[:, 1])


def top_k(row_id: np.ndarray, score: np.ndarray, k: int) -> Ranked:
    """The ``k`` best rows: highest score first, ties to the smaller row id.

    Example:
        >>> r = top_k(np.array([5, 3, 9, 1]), np.array([0.2, 0.7, 0.7, 0.1]), 3)
        >>> r.row_id.tolist(), r.score.tolist()
        ([3, 9, 5], [0.7, 0.7, 0.2])
    """
    order = np.lexsort((row_id, -score))[:k]
    return Ranked(row_id=np.asarray(row_id[order], np.int64), score=np.asarray(score[order]))


def merge(a: Ranked | None, b: Ranked, k: int) -> Ranked:
    """Top ``k`` of two top lists (the merge step of a distributed top-K)."""
    if a is None:
        return top_k(b.row_id, b.score, k)
    return top_k(np.concatenate([a.row_id, b.row_id]), np.concatenate([a.score, b.score]), k)


def candidates(k: int, n_rows: int, m: int | None = None) -> int:
    """Size of BatchBALD's candidate set (see the module docstring)."""
    return min(n_rows, m if m is not None else max(4 * k, k + 100))

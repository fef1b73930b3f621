"""Score large pools with MC dropout, in one process or on Ray.

:func:`score_pool` (also ``dropkit.score_pool`` and ``dropkit score``) reads a
pool block by block (:mod:`~dropkit.score.pool`, :mod:`~dropkit.score.parquet`),
scores every block with masks keyed by row id (:mod:`~dropkit.score.engine`; on
Ray: :mod:`~dropkit.score.distributed`), writes each block atomically
into a resumable Parquet folder (:mod:`~dropkit.score.store`) and merges a
top-K over the pool (:mod:`~dropkit.score.topk`).
"""

from dropkit.score.api import ScoreRun, score_pool
from dropkit.score.engine import BlockScores, ScoreSettings, score_rows
from dropkit.score.pool import Pool, open_pool
from dropkit.score.topk import Ranked

__all__ = [
    "BlockScores",
    "Pool",
    "Ranked",
    "ScoreRun",
    "ScoreSettings",
    "open_pool",
    "score_pool",
    "score_rows",
]

"""The Ray engine of :func:`dropkit.score_pool`: one Ray task per block.

The caller reads the pool and writes the parts; workers only compute, so no
shared file system is needed. The built model travels pickled once through
the object store and each worker process unpickles it once (a per-process
cache keyed by the model fingerprint). At most ``2 x workers`` blocks are in
flight, so the caller's memory stays flat. A task whose worker or node dies is
retried by Ray (``max_retries``) and its part is written once, by the caller,
when it returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from dropkit.score._run import WHERE, _build, _Progress, _span
from dropkit.score.engine import BlockScores, ScoreSettings, score_rows
from dropkit.score.pool import Pool
from dropkit.score.store import write_part

# Per worker process: the model of the current run, built or unpickled once.
_CACHE: dict[str, Any] = {}


def _ray_block(
    bundle: list[Any], key: str, rows: Any, ids: np.ndarray, settings: ScoreSettings
) -> dict[str, np.ndarray]:
    """Ray task: score one block (the model comes from the per-process cache)."""
    if key not in _CACHE:
        import ray

        _CACHE.clear()
        source, tokenizer = ray.get(bundle[0])
        _CACHE[key] = (_build(source), tokenizer)
    model, tokenizer = _CACHE[key]
    return score_rows(model, rows, ids, settings, tokenizer).values


def run_ray(
    model: nn.Module,
    key: str,
    data: Pool,
    todo: list[int],
    block_rows: int,
    settings: ScoreSettings,
    tokenizer: Any,
    folder: Path,
    bar: _Progress,
    address: str | None,
    workers: int | None,
) -> None:
    """Score the ``todo`` blocks as Ray tasks and write each part as it returns."""
    from dropkit.integrations.ray import cluster_cpus, session

    if not todo:
        return
    with session(address, workers=workers, caller=WHERE) as ray:
        # the caller's model travels pickled (unpickled once per worker): every worker has
        # the weights the manifest fingerprints, even from a factory that draws them at random
        bundle = ray.put((model, tokenizer))
        task = ray.remote(num_cpus=1, max_retries=5, retry_exceptions=False)(_ray_block)
        width = 2 * (workers or cluster_cpus(ray))
        queue = list(todo)
        flying: dict[Any, int] = {}
        task_name = "regression" if settings.output == "regression" else "classification"
        while queue or flying:
            while queue and len(flying) < width:
                b = queue.pop(0)
                lo, hi = _span(data, b, block_rows)
                ref = task.remote([bundle], key, data.read(lo, hi), data.row_ids(lo, hi), settings)
                flying[ref] = b
            ready, _ = ray.wait(list(flying), num_returns=1)
            b = flying.pop(ready[0])
            lo, hi = _span(data, b, block_rows)
            try:
                values = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:  # the worker's own error, as raised there
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, Exception) else exc) from None
            write_part(folder, b, BlockScores(task_name, data.row_ids(lo, hi), values).to_arrow())
            bar.update(hi - lo)

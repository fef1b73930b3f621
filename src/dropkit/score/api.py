"""Score a pool of any size with MC dropout: :func:`score_pool`.

The pool is cut into blocks of ``block_rows`` rows (by position). Each block is
scored by :func:`dropkit.score.engine.score_rows` (``mc_predict`` with masks
keyed by row id) and written as one part of the output folder
(:mod:`dropkit.score.store`), in this process (``engine="local"``: one block in
memory at a time) or as Ray tasks (``engine="ray"``: a local Ray on this
machine, or the cluster at ``address``; the caller reads the pool and writes
the parts, workers only compute, so no shared file system is needed). A block
whose worker dies is retried by Ray and written once; a re-run into the same
folder skips the parts that exist. With ``acquire`` the top ``K`` rows are
merged from per-block top lists (:mod:`dropkit.score.topk`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dropkit._validation import check_bool
from dropkit.score._run import WHERE, _build, _Progress, _span
from dropkit.score.engine import ScoreSettings, score_rows
from dropkit.score.pool import Pool, open_pool
from dropkit.score.store import (
    model_fingerprint,
    prepare,
    read_parts,
    write_part,
    write_table,
)
from dropkit.score.topk import ACQUIRE, Ranked, candidates, column_for, merge, scores_of, top_k

ENGINES = ("local", "ray")


@dataclass
class ScoreRun:
    """What a :func:`score_pool` call did.

    Attributes:
        path: The output folder (None when ``out=None``: see ``table``).
        n_rows: Rows in the pool.
        blocks: Blocks in the pool.
        blocks_scored: Blocks scored by this call.
        blocks_skipped: Blocks found finished in the folder and skipped.
        task: ``"classification"`` or ``"regression"``.
        ranked: The top ``K`` rows with ``acquire``, else None.
        ranked_path: The ranked file, when written.
        table: The score table (``pyarrow.Table``) when ``out=None``.
        seconds: Wall time of the call.
    """

    path: Path | None
    n_rows: int
    blocks: int
    blocks_scored: int
    blocks_skipped: int
    task: str
    ranked: Ranked | None = None
    ranked_path: Path | None = None
    table: Any = None
    seconds: float = 0.0

    def read(self) -> Any:
        """The whole score table as a ``pyarrow.Table``, in block (pool) order."""
        if self.table is not None:
            return self.table
        import pyarrow as pa

        assert self.path is not None
        return pa.concat_tables(list(read_parts(self.path, range(self.blocks))))


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(
            f"{WHERE}: expected {name} one of {', '.join(map(repr, choices))}, but got "
            f"{value!r}. Pick one of those."
        )


def _positive(name: str, value: Any, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{WHERE}: expected {name} >= 1 (an int), but got {value!r}. Pass e.g. 2.")


def score_pool(
    model_or_factory: nn.Module | Callable[[], nn.Module],
    pool: Any,
    *,
    out: str | Path | None = None,
    samples: int = 20,
    seed: int = 0,
    sites: Any = None,
    output: str = "logits",
    tau: float | None = None,
    heteroscedastic: bool = False,
    batch_size: int = 256,
    block_rows: int = 4096,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    acquire: str | None = None,
    top_k: int | None = None,
    candidates_m: int | None = None,
    tokenizer: Any = None,
    progress: bool | None = None,
    model_id: str | None = None,
) -> ScoreRun:
    """MC-dropout scores for every row of a pool, block by block, resumably.

    A row's scores depend only on the model, the seed, ``samples``, ``sites``
    and its row id: not on the engine, the number of workers, ``block_rows`` or
    ``batch_size`` (masks exactly, outputs up to float rounding), because
    every block calls :func:`dropkit.mc_predict` with ``row_ids=``.

    Args:
        model_or_factory: The model, or a zero-argument callable building it
            here, once; with ``engine="ray"`` the built model is pickled to
            the workers, each unpickling it once).
        pool: Path of a ``.npy`` / ``.pt`` / ``.txt`` / Parquet file, a folder
            or glob of Parquet files, or a tensor (:mod:`dropkit.score.pool`).
        out: Output folder (a Parquet dataset, :mod:`dropkit.score.store`);
            None scores into a temporary folder and returns the table.
        samples: MC samples ``T`` per row.
        seed: Base seed of the masks (fixed by default: resumable runs need it).
        sites: Which dropout sites drop (``None``: all; ``"head"``; ...).
        output: What the model returns: ``"logits"``, ``"probs"`` or
            ``"regression"``.
        tau: Regression noise precision.
        heteroscedastic: Regression head returns ``(mean, log_var)``.
        batch_size: Rows per forward.
        block_rows: Rows per block (one output part, one Ray task).
        engine: ``"local"`` (this process) or ``"ray"``.
        address: Ray cluster to join (``engine="ray"``); None starts a local Ray.
        workers: Local Ray CPUs / blocks in flight (default 2 locally, the
            cluster's CPUs when joining).
        acquire: ``"bald"``, ``"entropy"``, ``"margin"``, ``"variation_ratio"``
            or ``"batch_bald"`` (classification only).
        top_k: Rows to acquire (with ``acquire``).
        candidates_m: BatchBALD's candidate set size (default ``max(4 K, K + 100)``).
        tokenizer: Tokenizer for a text pool (Hugging Face).
        progress: ``rows/total (rate)`` on stderr; None: when stderr is a terminal.
        model_id: Identity of the model in the manifest (default: a SHA-256
            of its class and state dict).

    Shape:
        - pool: ``(N, ...)`` rows; output: one row per input.

    Returns:
        A :class:`ScoreRun`.

    Raises:
        FileNotFoundError: If the pool does not exist.
        ValueError: For a bad pool, argument, address, ``top_k`` larger than
            the pool, or an ``out`` folder holding another run's blocks.
        TypeError: If the model is not an ``nn.Module``.
        ImportError: Without ``pyarrow`` (or ``ray`` for ``engine="ray"``).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        >>> run = score_pool(net, torch.randn(10, 4), samples=8, block_rows=4,
        ...                  acquire="bald", top_k=2)
        >>> run.blocks, run.read().num_rows, run.ranked.row_id.shape
        (3, 10, (2,))
    """
    t0 = time.monotonic()
    _check_choice("engine", engine, ENGINES)
    check_bool(WHERE, heteroscedastic, "heteroscedastic")
    check_bool(WHERE, progress, "progress", optional=True)
    _positive("block_rows", block_rows, optional=False)
    _positive("workers", workers)
    if engine != "ray" and address is not None:
        raise ValueError(
            f"{WHERE}: expected address only with engine='ray', but got engine={engine!r}. "
            "Pass engine='ray' (--engine ray)."
        )
    if acquire is not None:
        _check_choice("acquire", acquire, ACQUIRE)
    if (acquire is None) != (top_k is None):
        raise ValueError(
            f"{WHERE}: expected acquire and top_k together, but got acquire={acquire!r}, "
            f"top_k={top_k!r}. Pass both (--acquire bald --top-k 100) or neither."
        )
    _positive("top_k", top_k)
    settings = ScoreSettings(
        samples=samples,
        seed=seed,
        sites=sites,
        output=output,
        batch_size=batch_size,
        tau=tau,
        heteroscedastic=heteroscedastic,
    )
    if acquire is not None and output == "regression":
        raise ValueError(
            f"{WHERE}: expected a classification model for acquire={acquire!r}, but got "
            "output='regression'. Rank regression rows by their epistemic_var column instead."
        )
    data = open_pool(pool, WHERE)
    if top_k is not None and top_k > data.n_rows:
        raise ValueError(
            f"{WHERE}: expected top_k <= the pool's {data.n_rows} rows, but got {top_k}. "
            f"Pass --top-k {data.n_rows} or fewer."
        )
    if data.kind == "text" and tokenizer is None:
        raise ValueError(
            f"{WHERE}: expected a tokenizer for the text pool {data.source!r}, but got "
            "tokenizer=None. Pass tokenizer= (a Hugging Face model folder brings its own), "
            "or a numeric pool."
        )
    if engine == "ray" and address is not None:
        from dropkit.integrations.ray import check_address

        check_address(address, WHERE)
    model = _build(model_or_factory)
    manifest = {
        "format": 1,
        "model": model_id or model_fingerprint(model),
        "pool": data.fingerprint,
        "n_rows": data.n_rows,
        "block_rows": int(block_rows),
        **settings.manifest(),
    }
    temporary = out is None
    folder = Path(tempfile.mkdtemp(prefix="dropkit-score-")) if temporary else Path(out)  # type: ignore[arg-type]
    try:
        done = prepare(folder, manifest, WHERE)
        n_blocks = -(-data.n_rows // block_rows)
        todo = [b for b in range(n_blocks) if b not in done]
        bar = _Progress(data.n_rows, sys.stderr.isatty() if progress is None else bool(progress))
        bar.update(sum(min(block_rows, data.n_rows - b * block_rows) for b in done))
        try:
            if engine == "local":
                _run_local(model, data, todo, block_rows, settings, tokenizer, folder, bar)
            else:
                from dropkit.score.distributed import run_ray

                run_ray(
                    model, manifest["model"], data, todo, block_rows,
                    settings, tokenizer, folder, bar, address, workers,
                )  # fmt: skip
        finally:
            bar.close()
        task = "regression" if output == "regression" else "classification"
        run = ScoreRun(folder, data.n_rows, n_blocks, len(todo), n_blocks - len(todo), task)
        if acquire is not None and top_k is not None:
            run.ranked = _rank(model, data, folder, n_blocks, acquire, top_k, candidates_m,
                               settings, tokenizer)  # fmt: skip
            if not temporary:
                path = folder / f"_ranked-{acquire}.parquet"
                run.ranked_path = write_table(path, run.ranked.to_arrow())
        if temporary:
            run.table = run.read()
            run.path = None
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    run.seconds = time.monotonic() - t0
    return run


def _run_local(
    model: nn.Module,
    data: Pool,
    todo: list[int],
    block_rows: int,
    settings: ScoreSettings,
    tokenizer: Any,
    folder: Path,
    bar: _Progress,
) -> None:
    for b in todo:
        lo, hi = _span(data, b, block_rows)
        scores = score_rows(model, data.read(lo, hi), data.row_ids(lo, hi), settings, tokenizer)
        write_part(folder, b, scores.to_arrow())
        bar.update(hi - lo)


def _rank(
    model: nn.Module,
    data: Pool,
    folder: Path,
    n_blocks: int,
    acquire: str,
    k: int,
    m: int | None,
    settings: ScoreSettings,
    tokenizer: Any,
) -> Ranked:
    want = candidates(k, data.n_rows, m) if acquire == "batch_bald" else k
    best: Ranked | None = None
    for table in read_parts(folder, range(n_blocks), ["row_id", column_for(acquire)]):
        ids = np.asarray(table.column("row_id").to_numpy(), dtype=np.int64)
        best = merge(best, top_k(ids, scores_of(acquire, table), want), want)
    assert best is not None
    if acquire != "batch_bald":
        return best
    return _batch_bald(model, data, best.row_id, k, settings, tokenizer)


def _batch_bald(
    model: nn.Module,
    data: Pool,
    ids: np.ndarray,
    k: int,
    settings: ScoreSettings,
    tokenizer: Any,
) -> Ranked:
    """Greedy BatchBALD among the candidates, rescored with consistent masks."""
    from dropkit.active.batch_bald import batch_bald
    from dropkit.score.engine import _batches
    from dropkit.uncertainty import mc_predict

    rows = data.take(data.positions(ids))
    result = mc_predict(
        model,
        list(_batches(model, rows, settings.batch_size, tokenizer)),
        samples=settings.samples,
        output=settings.output,
        sites=settings.sites,
        seed=int(settings.seed),
        consistent_masks=True,
        keep_samples=True,
        progress=False,
    )
    chosen = batch_bald(result, k, generator=torch.Generator().manual_seed(int(settings.seed)))
    return Ranked(row_id=ids[chosen.indices.numpy()], score=chosen.scores.double().numpy())

"""``dropkit bench score``: rows/s of ``dropkit.score_pool``, one process vs local Ray.

Cases, ``T = 20`` MC samples, masks keyed by row id:

* ``mlp``: a digits-sized MLP (64 -> 128 -> 128 -> 10, dropout 0.5 after each
  hidden layer), full MC;
* ``minilm-head``: MiniLM-L6 (real weights, ``dropkit.integrations.hf.minilm_path``)
  with a new 2-class dropout head, MC on the head only (``sites="head"``: the
  encoder runs once per row);
* ``minilm-full``: the same model with every dropout site on (``T`` encoder
  passes per row).

Each case runs with ``engine="local"`` (one process) and with ``engine="ray"``
on a local Ray of 1 and 2 workers, one torch thread per worker. Every engine
is warmed first on a few rows (imports and first-call costs; Ray worker
processes started, model unpickled); the Ray start-up is timed on its own. The Ray
overhead per block is ``(wall with 1 Ray worker - wall in one process) /
blocks``: the same work, plus the task round trip and the block's transfer.
A paper estimate for a 1M-row pool on 100 nodes follows from the measured
per-row cost ``c`` and overhead ``o``: ``wall = (N c + (N / B) o) / (100 k) +
start-up`` with ``k`` workers per node.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from dropkit._io import atomic_write_text
from dropkit.bench._record import write_record

#: Threads per worker, in every engine: one worker = one core. Set before anything
#: is timed; ``dropkit bench``'s machine line reports it.
THREADS = 1

SAMPLES = 20


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )  # fmt: skip


def _minilm() -> tuple[nn.Module, Any]:
    from dropkit._optional import require
    from dropkit.integrations.hf import minilm_path

    transformers = require("transformers", "hf", "bench score")
    transformers.logging.set_verbosity_error()  # the new head's init notice
    transformers.logging.disable_progress_bar()
    path = minilm_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    return model.eval(), tok


def _texts(n: int) -> list[str]:
    words = "the movie was good bad long short fine dull great odd plot cast".split()
    return [
        " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(6 + i % 5)) for i in range(n)
    ]


def _pool(case: str, n: int, folder: Any) -> Any:
    if case == "mlp":
        return torch.from_numpy(np.random.default_rng(0).standard_normal((n, 64)).astype("float32"))
    path = folder / f"{case}.txt"
    return atomic_write_text(path, "\n".join(_texts(n)) + "\n")


def _run(
    model: nn.Module, pool: Any, tok: Any, sites: Any, rows: int, block: int, **kw: Any
) -> float:
    from dropkit.score import score_pool

    t0 = time.perf_counter()
    run = score_pool(
        model, pool, samples=SAMPLES, sites=sites, block_rows=block, tokenizer=tok,
        batch_size=min(block, 256), progress=False, **kw,
    )  # fmt: skip
    assert run.n_rows == rows
    return time.perf_counter() - t0


def estimate(
    cost_s: float,
    overhead_s: float,
    block: int,
    startup_s: float,
    rows: int = 1_000_000,
    nodes: int = 100,
    per_node: int = 2,
) -> dict[str, float]:
    """Paper estimate of a cluster run from a measured per-row cost and per-block overhead.

    Example:
        >>> e = estimate(1e-3, 0.05, 1000, 10.0, rows=10_000, nodes=2, per_node=1)
        >>> round(e["wall_s"], 3), round(e["rows_per_s"], 1)
        (15.25, 655.7)
    """
    work = rows * cost_s + (rows / block) * overhead_s
    wall = work / (nodes * per_node) + startup_s
    return {
        "rows": rows,
        "nodes": nodes,
        "workers_per_node": per_node,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "node_hours": nodes * wall / 3600.0,
    }


CASES = {  # case -> (rows, block rows, quick rows, quick block, sites)
    "mlp": (40_960, 4096, 512, 128, None),
    "minilm-head": (1024, 256, 32, 8, "head"),
    "minilm-full": (128, 32, 8, 4, None),
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="dropkit bench score", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--engines", default="local,ray", help="local, ray or both")
    parser.add_argument("--quick", action="store_true", help="tiny pools (a smoke test)")
    parser.add_argument("--out", default=None, help="JSON results file")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    bad = [c for c in cases if c not in CASES]
    engines = [e for e in args.engines.split(",") if e]
    if bad or not cases or not set(engines) <= {"local", "ray"} or not engines:
        raise ValueError(
            f"bench score: expected --cases among {', '.join(CASES)} and --engines among "
            f"local, ray, but got {args.cases!r} / {args.engines!r}. Pick from those."
        )
    torch.set_num_threads(THREADS)
    results: dict[str, Any] = {}
    models: dict[str, tuple[nn.Module, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in cases:
            rows, block, qrows, qblock, sites = CASES[case]
            rows, block = (qrows, qblock) if args.quick else (rows, block)
            if case not in models:
                models[case] = (_mlp(), None) if case == "mlp" else _minilm()
            model, tok = models[case]
            # warm up this process (first-call costs: imports, kernels), as the Ray workers are
            _run(model, _pool(case, 8, folder), tok, sites, 8, 4)
            pool = _pool(case, rows, folder)
            wall = _run(model, pool, tok, sites, rows, block)
            results[case] = {
                "rows": rows,
                "block_rows": block,
                "blocks": -(-rows // block),
                "samples": SAMPLES,
                "sites": sites,
                "local_s": wall,
                "local_rows_per_s": rows / wall,
            }
            print(f"{case:<12} local     {rows / wall:>10.1f} rows/s ({rows} rows, {wall:.2f} s)")
        if "ray" in engines:
            from dropkit.integrations.ray import session

            for workers in (1, 2):
                t0 = time.perf_counter()
                with session(None, workers=workers, caller="bench score"):
                    startup = time.perf_counter() - t0
                    for case in cases:
                        r = results[case]
                        model, tok = models[case]
                        # warm the workers (processes started, model unpickled once each):
                        # 2 blocks of 4 rows per worker
                        warm = 8 * workers
                        _run(model, _pool(case, warm, folder), tok, r["sites"], warm, 4,
                             engine="ray", workers=workers)  # fmt: skip
                        pool = _pool(case, r["rows"], folder)
                        wall = _run(model, pool, tok, r["sites"], r["rows"], r["block_rows"],
                                    engine="ray", workers=workers)  # fmt: skip
                        r[f"ray{workers}_s"] = wall
                        r[f"ray{workers}_rows_per_s"] = r["rows"] / wall
                        r[f"ray{workers}_startup_s"] = startup
                        print(
                            f"{case:<12} ray x{workers}    {r['rows'] / wall:>10.1f} rows/s "
                            f"({wall:.2f} s; Ray start-up {startup:.1f} s)"
                        )
            for case in cases:
                r = results[case]
                r["ray_overhead_per_block_s"] = max(0.0, (r["ray1_s"] - r["local_s"]) / r["blocks"])
                r["paper_1m_rows_100_nodes"] = estimate(
                    r["local_s"] / r["rows"], r["ray_overhead_per_block_s"], r["block_rows"],
                    r["ray2_startup_s"],
                )  # fmt: skip
                e = r["paper_1m_rows_100_nodes"]
                print(
                    f"{case:<12} overhead {r['ray_overhead_per_block_s']:.3f} s/block; 1M rows on "
                    f"100 nodes x 2 workers: {e['wall_s']:.0f} s, {e['rows_per_s']:.0f} rows/s, "
                    f"{e['node_hours']:.2f} node-hours"
                )
    if args.out:
        write_record(args.out, {"bench": "score", "quick": args.quick, "cases": results})
    return 0

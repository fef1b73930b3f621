"""``dropkit score MODEL --input POOL --out SCORES.parquet``: MC-dropout scores of a pool.

MODEL is what ``dropkit predict`` takes: a local Hugging Face folder, a timm
model name or ``package.module:factory``. POOL is a ``.npy`` / ``.pt`` file, a
Parquet file, folder or glob (a list column, numeric columns, or one text
column for a Hugging Face model), or a ``.txt`` file with one text per line
(:mod:`dropkit.score.pool`). SCORES.parquet is a folder of Parquet parts, one
per block, plus ``_manifest.json`` (:mod:`dropkit.score.store`); re-running
the same command resumes it. With ``--acquire A --top-k K`` the top ``K`` row
ids go to ``SCORES.parquet/_ranked-A.parquet`` (ties: smaller row id first;
``batch_bald`` picks greedily among the top ``max(4 K, K + 100)`` by BALD,
rescored with consistent masks in this process).

``--engine ray`` scores blocks as Ray tasks: without ``--address`` on a local
Ray of ``--workers`` CPUs (no dashboard, loopback only), with it on that
cluster (every node needs dropkit and the model's code installed). Scores are
the same for any engine, worker count and block size: masks are keyed by row
id.

``--sites`` restricts MC to the selected sites (repeatable or comma-separated,
their union: kinds, ``head``, ``last:K``, ``blocks:I-J``, globs over paths);
with ``--p`` only their rates change.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dropkit.cli._common import (
    P_HELP,
    SITES_HELP,
    CLIError,
    Parser,
    apply_rates,
    parse_rates,
    parse_sites,
    selected_sites,
)

EXAMPLES = """examples:
  dropkit score mypkg.models:build_mlp --input pool.npy --out scores.parquet --samples 20
  dropkit score path/to/hf-folder --input texts.txt --out s.parquet --sites head \\
      --acquire bald --top-k 100
  dropkit score mypkg.models:build_mlp --input 'pool/*.parquet' --out s.parquet \\
      --engine ray --workers 2
  dropkit score mypkg.models:build_mlp --input pool.npy --out s.parquet \\
      --engine ray --address 10.0.0.1:6379
"""


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="dropkit score",
        description=(__doc__ or "").split("\n\n", 1)[1],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--input", required=True, metavar="POOL", help="the pool (see above)")
    p.add_argument("--out", required=True, metavar="SCORES.parquet", help="output folder")
    p.add_argument("--samples", type=int, default=20, metavar="T", help="MC samples (20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the masks (0)")
    p.add_argument("--sites", action="append", default=[], metavar="ENTRY", help=SITES_HELP)
    p.add_argument(
        "--output",
        default="logits",
        choices=("logits", "probs", "regression"),
        help="what the model returns (logits)",
    )
    p.add_argument("--tau", type=float, default=None, help="regression noise precision")
    p.add_argument("--batch-size", type=int, default=256, help="rows per forward (256)")
    p.add_argument("--block-rows", type=int, default=4096, help="rows per output part (4096)")
    p.add_argument("--engine", default="local", choices=("local", "ray"), help="local or ray")
    p.add_argument("--address", default=None, help="Ray cluster HOST:PORT (with --engine ray)")
    p.add_argument("--workers", type=int, default=None, help="local Ray CPUs / blocks in flight")
    p.add_argument(
        "--acquire",
        default=None,
        choices=("bald", "entropy", "margin", "variation_ratio", "batch_bald"),
        help="rank rows by this acquisition (with --top-k)",
    )
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="rows to rank")
    p.add_argument("--candidates", type=int, default=None, help="BatchBALD candidate set size")
    p.add_argument("--p", action="append", default=[], metavar="KIND=P", help=P_HELP)
    return p


def _tokenizer(loaded: Any) -> Any:
    if loaded.folder is None:
        return None
    from dropkit._optional import require

    transformers = require("transformers", "hf", "dropkit score")
    try:
        return transformers.AutoTokenizer.from_pretrained(str(loaded.folder), local_files_only=True)
    except (OSError, ValueError):
        return None  # token-id pools need none; a text pool then says so


def main(argv: list[str] | None = None) -> int:
    """Run ``dropkit score``; returns the exit code."""
    args = _parser().parse_args(argv)
    for name in ("samples", "batch_size", "block_rows", "workers", "top_k", "candidates"):
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise CLIError(f"dropkit score: expected {flag} >= 1, but got {value}. Pass e.g. 2.")
    if args.engine != "ray" and (args.address is not None or args.workers is not None):
        raise CLIError(
            "dropkit score: expected --address / --workers only with --engine ray, but got "
            f"--engine {args.engine}. Add --engine ray."
        )
    if (args.acquire is None) != (args.top_k is None):
        raise CLIError(
            f"dropkit score: expected --acquire and --top-k together, but got "
            f"--acquire {args.acquire} --top-k {args.top_k}. Pass both, e.g. "
            "--acquire bald --top-k 100."
        )
    rates = parse_rates("dropkit score", args.p)
    sites = parse_sites("dropkit score", args.sites)
    from dropkit.cli._models import load_model
    from dropkit.score.api import score_pool
    from dropkit.score.pool import open_pool

    open_pool(args.input, "dropkit score")  # a bad pool fails before loading the model
    loaded = load_model(args.model, caller="dropkit score", classifier=args.output != "regression")
    for note in loaded.notes:
        print(f"dropkit: note: {note}", file=sys.stderr)
    if sites is not None:  # every entry must select a site before any rate changes
        selected_sites("dropkit score", loaded.model, sites, args.model)
    apply_rates("dropkit score", loaded.model, rates, sites)
    run = score_pool(
        loaded.model,
        args.input,
        out=args.out,
        samples=args.samples,
        seed=args.seed,
        sites=sites,
        output=args.output,
        tau=args.tau,
        batch_size=args.batch_size,
        block_rows=args.block_rows,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        acquire=args.acquire,
        top_k=args.top_k,
        candidates_m=args.candidates,
        tokenizer=_tokenizer(loaded),
    )
    print(
        f"scores: {run.path} ({run.n_rows} rows, {run.blocks} blocks: {run.blocks_scored} "
        f"scored, {run.blocks_skipped} already done; {run.seconds:.1f} s)"
    )
    if run.ranked_path is not None:
        print(f"ranked: {run.ranked_path} (top {args.top_k} by {args.acquire})")
    return 0

"""``dropkit bench mc``: the cost of T Monte Carlo dropout samples, side by side.

Per case, in one run: one deterministic forward, the naive loop of ``T``
stochastic passes, the replicate-everything batch (the input repeated ``T``
times in one forward) and :func:`dropkit.mc_predict`; times are medians over
repeats and ratios are to the deterministic forward. Cases:

* ``minilm``: MiniLM-L6 (real weights) with a new dropout classification head,
  batch 32 of short texts, ``T = 20``, MC on the head only (``sites="head"``);
  target: dropkit within 1.5x of one deterministic forward.
* ``mlp``: an MLP with dropout after every hidden layer, ``T = 30``; target:
  dropkit at least 1.2x faster than the naive loop.
* ``digits``: adaptive sampling on scikit-learn digits with a small dropout MLP
  trained here; target: at most half of ``max_samples`` on average while
  agreeing with the full-``T`` argmax on at least 99% of test inputs.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dropkit._call import call_model
from dropkit.sites import mc_mode
from dropkit.uncertainty import MCResult, mc_predict

Row = dict[str, Any]


def _median_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up (kernel compilation, allocator)
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved, so load spikes hit all methods
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def _mc_methods(
    model: nn.Module, inputs: Any, samples: int, sites: Any, n: int
) -> dict[str, Callable[[], Any]]:
    def det() -> Any:
        with torch.no_grad():
            return torch.softmax(_logits(call_model(model, inputs)), -1)

    def naive() -> MCResult:
        with torch.no_grad(), mc_mode(model, sites=sites):
            probs = [torch.softmax(_logits(call_model(model, inputs)), -1) for _ in range(samples)]
        return MCResult.from_samples(torch.stack(probs))

    def replicate() -> MCResult:
        big = _repeat(inputs, samples)
        with torch.no_grad(), mc_mode(model, sites=sites):
            probs = torch.softmax(_logits(call_model(model, big)), -1)
        return MCResult.from_samples(probs.reshape(samples, n, -1))

    def dropkit() -> MCResult:
        return mc_predict(model, inputs, samples=samples, sites=sites, progress=False)

    return {"deterministic": det, "naive_loop": naive, "replicate": replicate, "dropkit": dropkit}


def _logits(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.logits


def _repeat(inputs: Any, k: int) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.repeat(k, *([1] * (inputs.dim() - 1)))
    return {key: v.repeat(k, *([1] * (v.dim() - 1))) for key, v in inputs.items()}


def _table_row(case: str, samples: int, times: dict[str, float], extras: dict) -> Row:
    det = times["deterministic"]
    return {
        "case": case,
        "samples": samples,
        "seconds": times,
        "x_deterministic": {k: v / det for k, v in times.items()},
        "dropkit_speedup_vs_naive": times["naive_loop"] / times["dropkit"],
        "dropkit_strategy": extras.get("strategy"),
        "dropkit_prefix": extras.get("prefix"),
    }


def bench_minilm(quick: bool, repeats: int) -> Row:
    """MiniLM-L6 real weights, new 2-class head, MC on the head only."""
    from dropkit._optional import require
    from dropkit.integrations.hf import minilm_path

    transformers = require("transformers", "hf", "bench mc")
    transformers.logging.set_verbosity_error()  # the new head's init notice
    transformers.logging.disable_progress_bar()
    path = minilm_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model.eval()
    n, samples = (8, 5) if quick else (32, 20)
    words = "the movie was good bad long short fine dull great odd".split()
    texts = [" ".join(words[(i + j) % len(words)] for j in range(7)) for i in range(n)]
    enc = dict(tok(texts, return_tensors="pt", padding=True))
    times = _median_times(_mc_methods(model, enc, samples, "head", n), repeats)
    extras = mc_predict(model, enc, samples=samples, sites="head", progress=False).extras
    row = _table_row("minilm", samples, times, extras)
    row["tokens"] = int(enc["input_ids"].shape[1])
    row["target"] = "dropkit <= 1.5x deterministic"
    row["met"] = row["x_deterministic"]["dropkit"] <= 1.5
    return row


def _mlp(widths: list[int], p: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers += [nn.ReLU(), nn.Dropout(p)]
    return nn.Sequential(*layers)


def bench_mlp(quick: bool, repeats: int) -> Row:
    """An MLP with dropout after every hidden layer."""
    torch.manual_seed(0)
    width = 128 if quick else 256
    model = _mlp([64, width, width, width, 10], 0.1).eval()
    n, samples = 64, 30
    x = torch.randn(n, 64)
    times = _median_times(_mc_methods(model, x, samples, None, n), repeats)
    extras = mc_predict(model, x, samples=samples, progress=False).extras
    row = _table_row("mlp", samples, times, extras)
    row["target"] = "dropkit >= 1.2x faster than naive loop"
    row["met"] = row["dropkit_speedup_vs_naive"] >= 1.2
    return row


def bench_digits(quick: bool, repeats: int) -> Row:
    """Adaptive sampling on digits: samples used and agreement with full T."""
    from dropkit._optional import require

    datasets = require("sklearn.datasets", "metrics", "bench mc")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    test, train = perm[:360], perm[360:]
    torch.manual_seed(0)
    model = _mlp([64, 128, 128, 10], 0.25)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(15):
        for idx in train[torch.randperm(len(train))].split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    max_samples, tol = (40, 0.01) if quick else (100, 0.01)
    xt = x[test]

    def full() -> MCResult:
        return mc_predict(model, xt, samples=max_samples, seed=1, progress=False)

    def adaptive() -> MCResult:
        return mc_predict(
            model, xt, samples=max_samples, tol=tol, min_samples=10, seed=1, progress=False
        )

    times = _median_times({"full": full, "adaptive": adaptive}, repeats)
    ref, ada = full(), adaptive()
    agree = float((ref.mean.argmax(-1) == ada.mean.argmax(-1)).double().mean())
    used = float(ada.samples_used.double().mean())
    return {
        "case": "digits",
        "samples": max_samples,
        "tol": tol,
        "min_samples": 10,
        "seconds": times,
        "mean_samples_used": used,
        "fraction_of_max": used / max_samples,
        "argmax_agreement": agree,
        "test_accuracy": float((ada.mean.argmax(-1) == y[test]).double().mean()),
        "target": "fraction_of_max <= 0.5 and argmax_agreement >= 0.99",
        "met": used / max_samples <= 0.5 and agree >= 0.99,
    }


CASES: dict[str, Callable[[bool, int], Row]] = {
    "minilm": bench_minilm,
    "mlp": bench_mlp,
    "digits": bench_digits,
}


def _print(rows: list[Row]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    head = f"{'case':8} {'T':>4} {'method':14} {'seconds':>9} {'x det':>7}"
    for row in rows:
        if row["case"] == "digits":
            print(
                f"digits: T_max={row['samples']} tol={row['tol']} mean samples used "
                f"{row['mean_samples_used']:.1f} ({row['fraction_of_max']:.2f} of max), "
                f"argmax agreement {row['argmax_agreement']:.4f}, "
                f"time full {row['seconds']['full']:.3f}s adaptive "
                f"{row['seconds']['adaptive']:.3f}s  [{'met' if row['met'] else 'MISSED'}]"
            )
            continue
        print(head)
        for method, sec in row["seconds"].items():
            ratio = row["x_deterministic"][method]
            print(f"{row['case']:8} {row['samples']:>4} {method:14} {sec:9.4f} {ratio:7.2f}")
        print(
            f"  dropkit: {row['dropkit_speedup_vs_naive']:.2f}x faster than the naive loop, "
            f"strategy={row['dropkit_strategy']}, prefix={row['dropkit_prefix']}; "
            f"target {row['target']}: {'met' if row['met'] else 'MISSED'}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(prog="dropkit bench mc", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per method (--frontier: rounds per batch, the fastest counts; 3)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--cases", default=None, help=f"comma-separated subset of {','.join(CASES)}"
    )
    parser.add_argument(
        "--frontier",
        action="store_true",
        help="cost and quality per MC depth k (dropkit.bench.frontier), not the cases",
    )
    parser.add_argument("--seeds", type=int, default=None, help="--frontier: seeds (5)")
    parser.add_argument("--samples", type=int, default=None, help="--frontier: T (20)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.frontier:
        return _frontier(args)
    if args.cases is None:
        args.cases = ",".join(CASES)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise ValueError(
            f"bench mc: expected cases among {sorted(CASES)}, but got {unknown!r}. "
            f"Pick from {', '.join(CASES)}."
        )
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 7)
    rows = [CASES[name](args.quick, repeats) for name in names]
    _print(rows)
    if args.out is not None:
        payload = {
            "bench": "mc",
            "quick": args.quick,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cases": rows,
        }
        from dropkit.bench._record import write_record

        write_record(args.out, payload)
    return 0


def _frontier(args: argparse.Namespace) -> int:
    from dropkit._io import write_json
    from dropkit.bench.frontier import CASES as MODELS
    from dropkit.bench.frontier import run_frontier

    for flag, value in (
        ("--seeds", args.seeds),
        ("--samples", args.samples),
        ("--repeats", args.repeats),
    ):
        if value is not None and value < 1:
            raise ValueError(
                f"bench mc: expected {flag} to be an integer >= 1, but got {value!r}. "
                f"Pass e.g. {flag} 2."
            )
    names = None if args.cases is None else [c for c in args.cases.split(",") if c]
    unknown = [c for c in names or () if c not in MODELS]
    if unknown:
        raise ValueError(
            f"bench mc --frontier: expected cases among {sorted(MODELS)}, but got "
            f"{unknown!r}. Pick from {', '.join(MODELS)}."
        )
    if args.out is not None and args.out.is_dir():
        raise ValueError(
            f"dropkit bench: expected --out to be a file, but got the folder {str(args.out)!r}. "
            "Pass a file name such as out/frontier.json."
        )
    record = run_frontier(args.quick, args.seeds, args.samples, names, args.repeats)
    if args.out is not None:
        write_json(args.out, record)
        print(f"wrote {args.out} (a metrics.json: dropkit report {args.out})")
    return 0

"""Benchmark of dropkit's dropout kernel against ``F.dropout`` and a plain copy.

``dropkit bench kernels`` times, side by side in one run and interleaved
call by call (so load from other processes hits every method alike), the
median of ``F.dropout``, :func:`dropkit.kernels.bernoulli_dropout`, the same
kernel without numba (the pure-torch fallback; CPU only), the kernel without
bulk page population of its output (CPU only; see
:mod:`dropkit.kernels._memory`) and ``x.clone()``
(the memory-bandwidth reference), forward, forward+backward with a dense
upstream gradient (``y.backward(grad)``) and through ``y.sum().backward()``
(whose gradient is a broadcast, stride-0 tensor that the kernel reads in
place), at several sizes with ``p = 0.1``. Bytes kept for backward are measured with
``torch.autograd.graph.saved_tensors_hooks``. A model-level measure trains a
MiniLM-L6-shaped BERT (random weights, real config when the ``hf`` extra is
installed) with stock ``nn.Dropout``, after :func:`dropkit.fast_dropout`, and
after ``fast_dropout(model, attention=True)`` (attention dropout through the
kernel too).

References:
    Wang et al., "MiniLM: deep self-attention distillation for task-agnostic
    compression of pre-trained transformers", NeurIPS 2020.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dropkit.kernels import _memory, _ops, bernoulli_dropout

P = 0.1
FULL_SIZES = ((100,), (10_000,), (1_000, 1_000), (32, 512, 768))
QUICK_SIZES = ((100,), (10_000,), (200, 500))


def _fallback(x: torch.Tensor) -> torch.Tensor:
    """Run the kernel as if the ``fast`` extra were missing.

    numba is hidden for this call only; a context manager would add ~1.3 us,
    a visible share of a 100-element dropout.
    """
    _ops._backend("numba")  # resolve first, so the real value can be restored
    saved = _ops._backends["numba"]
    _ops._backends["numba"] = None
    try:
        return bernoulli_dropout(x, P)
    finally:
        _ops._backends["numba"] = saved


def _unpopulated(x: torch.Tensor) -> torch.Tensor:
    """Run the kernel with bulk page population switched off for this call."""
    _memory._load()  # resolve first, so the real value can be restored
    saved = _memory._enabled
    _memory._enabled = False
    try:
        return bernoulli_dropout(x, P)
    finally:
        _memory._enabled = saved


def _methods(device: str) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    methods: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "F.dropout": lambda x: F.dropout(x, P, True),
        "dropkit": lambda x: bernoulli_dropout(x, P),
    }
    if device == "cpu":
        methods["dropkit (no numba)"] = _fallback
        methods["dropkit (no populate)"] = _unpopulated
    methods["clone"] = lambda x: x.clone()
    return methods


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _saved_bytes(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """Sum of ``nbytes`` of every tensor autograd saves for ``fn``'s backward."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    leaf = x.detach().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(leaf)
    return total


def _time_size(shape: tuple[int, ...], device: str, repeats: int) -> dict[str, Any]:
    """Interleaved median timings (ms) of every method at one tensor shape."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device)
    grad = torch.randn(shape, generator=gen).to(device)
    leaf = x.clone().requires_grad_(True)
    n = x.numel()
    number = max(1, min(200, 100_000 // n))  # calls per sample for tiny sizes
    methods = _methods(device)

    def fwd(fn: Callable) -> None:
        for _ in range(number):
            fn(x)

    def fwd_bwd(fn: Callable) -> None:
        for _ in range(number):
            leaf.grad = None
            fn(leaf).backward(grad)

    def fwd_sum_bwd(fn: Callable) -> None:
        for _ in range(number):
            leaf.grad = None
            fn(leaf).sum().backward()

    phases = (("fwd", fwd), ("fwd_bwd", fwd_bwd), ("fwd_sum_bwd", fwd_sum_bwd))
    times: dict[str, dict[str, list[float]]] = {k: {ph: [] for ph, _ in phases} for k in methods}
    for fn in methods.values():  # warm-up (numba compiles on first use)
        for _, run in phases:
            run(fn)
    for _ in range(repeats):
        for name, fn in methods.items():
            for phase, run in phases:
                _sync(device)
                start = time.perf_counter()
                run(fn)
                _sync(device)
                times[name][phase].append((time.perf_counter() - start) * 1e3 / number)
    row: dict[str, Any] = {"shape": list(shape), "numel": n, "dtype": "float32", "p": P}
    for name, fn in methods.items():
        row[name] = {
            "fwd_ms": statistics.median(times[name]["fwd"]),
            "fwd_bwd_ms": statistics.median(times[name]["fwd_bwd"]),
            "fwd_sum_bwd_ms": statistics.median(times[name]["fwd_sum_bwd"]),
            "saved_bytes": _saved_bytes(fn, x),
        }
    base, ours, ref = row["F.dropout"], row["dropkit"], row["clone"]
    row["speedup_fwd"] = base["fwd_ms"] / ours["fwd_ms"]
    row["speedup_fwd_bwd"] = base["fwd_bwd_ms"] / ours["fwd_bwd_ms"]
    row["speedup_fwd_sum_bwd"] = base["fwd_sum_bwd_ms"] / ours["fwd_sum_bwd_ms"]
    row["vs_clone_fwd"] = ours["fwd_ms"] / ref["fwd_ms"]
    if "dropkit (no numba)" in row:
        fallback = row["dropkit (no numba)"]
        row["fallback_speedup_fwd"] = base["fwd_ms"] / fallback["fwd_ms"]
        row["fallback_speedup_fwd_bwd"] = base["fwd_bwd_ms"] / fallback["fwd_bwd_ms"]
    return row


def _minilm_config(quick: bool) -> tuple[Any, str]:
    """MiniLM-L6's BertConfig: the shipped one when available, else its numbers."""
    import transformers

    try:
        from dropkit.integrations.hf import minilm_path

        config = transformers.BertConfig.from_pretrained(str(minilm_path()))
        source = "minilm_path() config"
    except (ImportError, OSError):
        config = transformers.BertConfig(
            vocab_size=30522,
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
        )
        source = "MiniLM-L6 numbers (hidden 384, 6 layers, 12 heads)"
    config.num_labels = 2
    return config, source


def _time_model(quick: bool, repeats: int) -> dict[str, Any]:
    """Training steps per second of a MiniLM-L6-shaped BERT, stock vs fast_dropout."""
    from dropkit._optional import require
    from dropkit.swap import fast_dropout

    transformers = require("transformers", "hf", "dropkit bench kernels")
    config, source = _minilm_config(quick)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    stock = transformers.BertForSequenceClassification(config).train()
    fast = copy.deepcopy(stock)
    swapped = fast_dropout(fast)
    fast_attention = copy.deepcopy(stock)
    fast_dropout(fast_attention, attention=True)
    batch, length = (4, 16) if quick else (32, 128)
    ids = torch.randint(0, config.vocab_size, (batch, length))
    labels = torch.randint(0, 2, (batch,))
    models = {"stock": stock, "fast_dropout": fast, "fast_dropout_attention": fast_attention}
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(name: str) -> None:
        opts[name].zero_grad(set_to_none=True)
        models[name](input_ids=ids, labels=labels).loss.backward()
        opts[name].step()

    times: dict[str, list[float]] = {k: [] for k in models}
    for name in models:
        step(name)  # warm-up
    for _ in range(repeats):
        for name in models:
            start = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - start)
    out: dict[str, Any] = {
        "model": "BertForSequenceClassification, MiniLM-L6 shape, random weights",
        "config": source,
        "batch": batch,
        "length": length,
        "swapped": swapped,
        "attention_dropout": (
            "fast_dropout: inside SDPA (dropout_p=self.dropout.p); "
            "fast_dropout_attention: dropkit kernel (attention=True)"
        ),
    }
    for name, ts in times.items():
        out[f"{name}_steps_per_s"] = 1.0 / statistics.median(ts)
    out["speedup"] = out["fast_dropout_steps_per_s"] / out["stock_steps_per_s"]
    out["speedup_attention"] = out["fast_dropout_attention_steps_per_s"] / out["stock_steps_per_s"]
    return out


def _table(rows: list[dict[str, Any]], model: dict[str, Any] | None) -> str:
    names = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    head = (
        f"{'numel':>10} {'method':<21} {'fwd ms':>9} {'fwd+bwd ms':>11} {'sum().bwd ms':>13}"
        f" {'saved bytes':>12}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        for name in names:
            r = row[name]
            lines.append(
                f"{row['numel']:>10} {name:<21} {r['fwd_ms']:>9.3f} {r['fwd_bwd_ms']:>11.3f}"
                f" {r['fwd_sum_bwd_ms']:>13.3f} {r['saved_bytes']:>12}"
            )
        lines.append(
            f"{'':>10} dropkit vs F.dropout: fwd {row['speedup_fwd']:.2f}x faster, "
            f"fwd+bwd {row['speedup_fwd_bwd']:.2f}x faster, fwd+sum().backward() "
            f"{row['speedup_fwd_sum_bwd']:.2f}x faster; fwd = "
            f"{row['vs_clone_fwd']:.2f}x clone"
        )
        if "fallback_speedup_fwd" in row:
            lines.append(
                f"{'':>10} dropkit (no numba) vs F.dropout: fwd "
                f"{row['fallback_speedup_fwd']:.2f}x faster, fwd+bwd "
                f"{row['fallback_speedup_fwd_bwd']:.2f}x faster"
            )
    if model is not None:
        lines.append(
            f"MiniLM-L6 training (batch {model['batch']} x {model['length']} tokens, "
            f"{model['swapped']} nn.Dropout swapped): stock "
            f"{model['stock_steps_per_s']:.3f} steps/s, fast_dropout "
            f"{model['fast_dropout_steps_per_s']:.3f} steps/s ({model['speedup']:.2f}x), "
            f"fast_dropout(attention=True) {model['fast_dropout_attention_steps_per_s']:.3f} "
            f"steps/s ({model['speedup_attention']:.2f}x)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the kernel benchmark; print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(prog="dropkit bench kernels", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--repeats", type=int, help="timed samples per method (median)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-model", action="store_true", help="skip the MiniLM measure")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "dropkit bench kernels: expected a CUDA device for --device cuda, but got "
            "torch.cuda.is_available() == False. Run on a GPU machine or use --device cpu."
        )
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 9)
    if repeats < 1:
        raise ValueError(
            f"dropkit bench kernels: expected --repeats >= 1, but got {repeats!r}. "
            "Pass a positive count such as 9."
        )
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    rows = [_time_size(shape, args.device, repeats) for shape in sizes]
    model = None
    if not args.no_model and args.device == "cpu":
        model = _time_model(args.quick, 2 if args.quick else max(3, repeats // 2))
    print(_table(rows, model))
    result = {
        "benchmark": "kernels",
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "numba": _ops._backend("numba") is not None,
        "repeats": repeats,
        "quick": args.quick,
        "rows": rows,
        "model": model,
    }
    if args.out is not None:
        from dropkit.bench._record import write_record

        write_record(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``dropkit predict MODEL``: MC-dropout predictions with uncertainty as JSON lines.

Inputs: :mod:`dropkit.cli._inputs`.

Each output line is one JSON object per input: ``index`` (0-based position
in the batch, the row of a CSV not counting its header, or the line of a text
file), ``prediction``,
``label`` (from the model config when it has one), ``probs`` (mean predictive
probabilities; MC samples are averaged as probabilities, never as logits),
``predictive_entropy``, ``expected_entropy``, ``mutual_information`` (BALD;
Houlsby et al., 2011), ``variation_ratio`` and ``samples_used``. For
``--output regression`` the fields are ``mean`` and ``std``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from dropkit._optional import require
from dropkit.cli._common import (
    P_HELP,
    SITES_HELP,
    CLIError,
    ShellSites,
    apply_rates,
    command_parser,
    parse_rates,
    parse_sites,
    progress_enabled,
    selected_sites,
    with_rate_hint,
)
from dropkit.cli._inputs import Inputs, read_inputs
from dropkit.cli._models import LoadedModel


def _batches(loaded: LoadedModel, inputs: Inputs, batch_size: int, caller: str) -> Iterator[Any]:
    n = len(inputs)
    if inputs.texts is not None:
        if loaded.folder is None:
            raise ValueError(
                f"{caller}: expected a Hugging Face model folder for text inputs, but got "
                f"{loaded.name!r} ({loaded.source}). Pass tensors (.npy/.pt/.csv) instead."
            )
        transformers = require("transformers", "hf", caller)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(loaded.folder), local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{caller}: expected a tokenizer in {str(loaded.folder)!r}, but loading it "
                f"failed ({exc}). Save one with tokenizer.save_pretrained(folder)."
            ) from exc
        for i in range(0, n, batch_size):
            chunk = inputs.texts[i : i + batch_size]
            yield dict(tokenizer(chunk, padding=True, truncation=True, return_tensors="pt"))
        return
    assert inputs.tensor is not None
    x = inputs.tensor
    if loaded.source == "huggingface":
        if x.is_floating_point() or x.dim() != 2:
            raise ValueError(
                f"{caller}: expected token ids (integers, shape (N, L)) for a Hugging Face "
                f"model, but got {x.dtype} of shape {tuple(x.shape)}. Pass texts or token ids."
            )
        for i in range(0, n, batch_size):
            ids = x[i : i + batch_size].long()
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return
    for i in range(0, n, batch_size):
        yield x[i : i + batch_size]


def _round(values: torch.Tensor) -> Any:
    out = [round(float(v), 6) for v in values.reshape(-1).tolist()]
    return out if values.dim() > 0 else out[0]


def _labels(model: Any) -> dict[int, str]:
    config = getattr(model, "config", None)
    raw = getattr(config, "id2label", None) or {}
    return {int(k): str(v) for k, v in raw.items()}


def predict_lines(
    loaded: LoadedModel,
    inputs: Inputs,
    *,
    samples: int,
    sites: ShellSites = None,
    output: str = "logits",
    batch_size: int = 32,
    progress: bool = False,
    seed: int | None = None,
    caller: str = "dropkit predict",
) -> Iterator[dict[str, Any]]:
    """Run MC dropout over ``inputs`` batch by batch and yield one record per input.

    Args:
        loaded: The model, from :func:`dropkit.cli._models.load_model`.
        inputs: Parsed inputs, from :func:`read_inputs`.
        samples: MC samples per input.
        sites: Restrict MC to these sites (``"head"`` for the classifier head;
            a list selects the union), from
            :func:`~dropkit.cli._common.parse_sites`.
        output: What the model returns: ``"logits"``, ``"probs"`` or ``"regression"``.
        batch_size: Inputs per forward.
        progress: Show a progress bar on stderr.
        seed: Seed of the dropout masks, for reproducible output.
        caller: Command name used in error messages.

    Yields:
        One JSON-ready dict per input (fields in the module docstring).
    """
    from dropkit.uncertainty import mc_predict

    labels = _labels(loaded.model)
    bar = None
    if progress:
        tqdm = require("tqdm", "report", caller).tqdm
        bar = tqdm(total=len(inputs), unit="input", desc="MC dropout", leave=False)
    position = 0
    kwargs: dict[str, Any] = {"samples": samples, "output": output, "progress": False}
    if seed is not None:
        kwargs["seed"] = seed
    if sites is not None:
        kwargs["sites"] = sites
    try:
        for batch in _batches(loaded, inputs, batch_size, caller):
            result = mc_predict(loaded.model, batch, **kwargs)
            for k in range(result.mean.shape[0]):
                yield _record(result, k, inputs.index(position), labels)
                position += 1
            if bar is not None:
                bar.update(result.mean.shape[0])
    finally:
        if bar is not None:
            bar.close()


def _record(result: Any, k: int, index: int, labels: dict[int, str]) -> dict[str, Any]:
    rec: dict[str, Any] = {"index": index}
    if result.task == "regression":
        rec["mean"] = _round(result.mean[k])
        rec["std"] = _round(result.std[k])
    else:
        probs = result.mean[k]
        pred = int(probs.argmax())
        rec["prediction"] = pred
        if pred in labels:
            rec["label"] = labels[pred]
        rec["probs"] = _round(probs)
        for name in (
            "predictive_entropy",
            "expected_entropy",
            "mutual_information",
            "variation_ratio",
        ):
            value = getattr(result, name)
            rec[name] = None if value is None else _round(value[k])
    rec["samples_used"] = int(result.samples_used[k])
    for key, value in rec.items():
        if isinstance(value, float) and not math.isfinite(value):
            rec[key] = None
    return rec


# -- the command ------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``dropkit predict MODEL``: MC-dropout predictions as JSON lines; returns the exit code."""
    p = command_parser(
        "predict",
        "MC-dropout predictions with uncertainty, one JSON object per input on stdout:\n"
        "index, prediction, label, probs (mean of sample probabilities),\n"
        "predictive_entropy, expected_entropy, mutual_information, variation_ratio,\n"
        "samples_used.\n\n"
        "--input is a .txt file (one text per line, tokenised by the model folder's\n"
        "tokenizer; index is the 0-based line number, blank lines get no record), a\n"
        ".npy / .pt tensor (N, ...), a .csv of numbers (one input per row; a first row\n"
        "that is not numbers is a header), or a single text.\n\n"
        "A model built with every rate 0 (a timm model made with drop_rate=0) has\n"
        "nothing to sample: give it rates with --p KIND=P.\n\n"
        "--sites restricts MC to the selected sites (the others stay in eval); with\n"
        "--p only the selected sites' rates change.",
        '  dropkit predict path/to/hf-folder --input "a great movie" --samples 20 --sites head\n'
        "  dropkit predict path/to/hf-folder --input reviews.txt --samples 30 > preds.jsonl\n"
        "  dropkit predict mypkg.models:build_mlp --input x.npy --samples 50 --seed 0\n"
        "  dropkit predict resnet10t --input x.npy --p element=0.2 --samples 10\n"
        "  dropkit predict path/to/hf-folder --input reviews.txt --sites last:2,head\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--input", required=True, metavar="FILE|TEXT", help="inputs (see above)")
    p.add_argument("--samples", type=int, default=20, metavar="T", help="MC samples (20)")
    p.add_argument("--sites", action="append", default=[], metavar="ENTRY", help=SITES_HELP)
    p.add_argument(
        "--output",
        default="logits",
        choices=("logits", "probs", "regression"),
        help="what the model returns (logits)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="inputs per forward (32)")
    p.add_argument("--seed", type=int, default=None, help="seed of the dropout masks")
    p.add_argument("--p", action="append", default=[], metavar="KIND=P", help=P_HELP)
    args = p.parse_args(argv)
    if args.samples < 1:
        raise CLIError(
            f"dropkit predict: expected --samples >= 1, but got {args.samples}. Use e.g. 20."
        )
    if args.batch_size < 1:
        raise CLIError(
            f"dropkit predict: expected --batch-size >= 1, but got {args.batch_size}. Use 32."
        )
    rates = parse_rates("dropkit predict", args.p)
    sites = parse_sites("dropkit predict", args.sites)
    from dropkit.cli._models import load_model

    inputs = read_inputs(args.input)
    for note in inputs.notes:
        print(f"dropkit: note: {note}", file=sys.stderr)
    loaded = load_model(args.model, caller="dropkit predict", classifier=True)
    for note in loaded.notes:
        print(f"dropkit: note: {note}", file=sys.stderr)
    if sites is not None:  # every entry must select a site before any rate changes
        selected_sites("dropkit predict", loaded.model, sites, args.model)
    apply_rates("dropkit predict", loaded.model, rates, sites)
    _check_stochastic(loaded.model, args.model, sites)
    try:
        for record in predict_lines(
            loaded,
            inputs,
            samples=args.samples,
            sites=sites,
            output=args.output,
            batch_size=args.batch_size,
            progress=progress_enabled(),
            seed=args.seed,
        ):
            sys.stdout.write(json.dumps(record) + "\n")
    except (RuntimeError, ValueError) as exc:
        raise with_rate_hint(exc) from exc
    sys.stdout.flush()
    return 0


def _check_stochastic(model: nn.Module, name: str, sites: ShellSites) -> None:
    """Refuse, with the --p fix, a model whose every dropout rate is 0."""
    from collections import Counter

    from dropkit.sites import find_dropout

    if sites is not None:
        return  # mc_predict judges the selected sites itself
    found = find_dropout(model)
    # No static site at all: the model may still call dropout functionally, which
    # mc_predict finds by probing; it judges that case itself.
    if found and all(s.p == 0 for s in found):
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(Counter(s.kind for s in found).items()))
        first = sorted({s.kind for s in found})[0]
        raise CLIError(
            f"dropkit predict: expected at least one dropout rate above 0, but got {name!r} "
            f"with all {len(found)} sites at p = 0 ({kinds}). MC dropout would repeat one "
            f"prediction: pass rates with --p KIND=P, e.g. --p {first}=0.1."
        )

"""Monte Carlo dropout prediction in one call: :func:`mc_predict`.

Keeps the selected dropout sites on at inference (under :func:`dropkit.mc_mode`,
so BatchNorm and every other module stay as they are) and summarises ``T``
stochastic passes: mean probabilities (probabilities are averaged, never
logits), predictive / expected entropy and mutual information (BALD),
variation ratio, per-class std; or, for regression, predictive mean, epistemic
and aleatoric variance and the MC predictive log-likelihood of targets (the UCI
protocol). Reductions stream in float64, so memory does not grow with ``T``.

It is fast where it can be exact: a deterministic prefix runs once
(:mod:`~dropkit.uncertainty.split`), the stochastic rest runs in a loop or on
replicated inputs, chosen by timing both on the first batch, and per-sample
seeded masks (:mod:`~dropkit.uncertainty.masks`) make every strategy draw the
same masks. Adaptive sampling stops per input once the standard error is below
``tol``.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation: Representing Model
    Uncertainty in Deep Learning", ICML 2016.
    Houlsby et al., "Bayesian Active Learning for Classification and Preference
    Learning" (BALD), arXiv:1112.5745, 2011.
    Kendall and Gal, "What Uncertainties Do We Need in Bayesian Deep Learning for
    Computer Vision?" (heteroscedastic regression), NeurIPS 2017.
    Kirsch, van Amersfoort and Gal, "BatchBALD", NeurIPS 2019.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
from torch import nn

from dropkit._validation import (
    _fail,
    check_bool,
    check_choice,
    check_int,
    check_module,
    renamed_kwargs,
)
from dropkit.uncertainty._engine import Engine, Settings
from dropkit.uncertainty._inputs import (
    check_not_texts,
    label_names,
    model_device,
    text_batches,
    to_device,
)
from dropkit.uncertainty._io import (
    WHERE,
    batch_keys,
    iter_batches,
    progress_bar,
    row_keys,
    rows_of,
)
from dropkit.uncertainty._limits import check_kept_bytes
from dropkit.uncertainty.result import MCResult

if TYPE_CHECKING:
    from dropkit.sites.select import SiteSelector

#: What ``mc_predict`` predicts on: a tensor ``(N, ...)``, a mapping of tensors
#: (tokenizer output), an iterable of batches (``DataLoader``), or with
#: ``tokenizer=`` a text or list of texts.
MCInputs: TypeAlias = (
    torch.Tensor | Mapping[str, torch.Tensor] | Iterable[object] | str | Sequence[str]
)
#: A Hugging Face tokenizer: ``tokenizer(texts, padding=..., ...) -> mapping``.
Tokenizer: TypeAlias = Callable[..., Mapping[str, Any]]


def _positive(name: str, value: Any, fix: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise _fail(ValueError, WHERE, f"{name} > 0", value, fix)
    return float(value)


#: Most MC samples one call takes: far more than any estimate needs (the standard
#: error at 2**20 samples is already 1e-3 of one sample's spread).
MAX_SAMPLES = 2**20


def _samples(name: str, value: Any, minimum: int = 1) -> int:
    n = check_int(WHERE, value, name, minimum=minimum)
    if n > MAX_SAMPLES:
        raise _fail(
            ValueError,
            WHERE,
            f"{name} <= {MAX_SAMPLES} (2**20)",
            value,
            "Use a few dozen to a few thousand samples; for a tolerance on the standard "
            "error pass tol= and let adaptive sampling stop early.",
        )
    return n


def _check_rows(batch: Any) -> None:
    """Raise ValueError unless a mapping's batched tensors agree on their rows (dim 0)."""
    if not isinstance(batch, Mapping):
        return
    rows = {k: int(v.shape[0]) for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim()}
    n = next(iter(rows.values()), 1)
    if any(r not in (n, 1) for r in rows.values()):
        raise _fail(
            ValueError,
            WHERE,
            "the tensors of a mapping batch to agree on their rows (dim 0)",
            rows,
            "Give every tensor one row per input (size-1 tensors broadcast), e.g. "
            "tokenizer(texts, padding=True, return_tensors='pt').",
        )


def _depth_selected(sites: Any) -> bool:
    """Whether ``sites`` holds a ``"last:k"`` / ``"blocks:i-j"`` selector."""
    specs = [sites] if isinstance(sites, str) else sites if isinstance(sites, (list, tuple)) else []
    return any(isinstance(s, str) and s.startswith(("last:", "blocks:")) for s in specs)


def _check_not_empty(inputs: Any, total: int | None) -> None:
    if total != 0:
        return
    shape = (
        tuple(inputs.shape)
        if isinstance(inputs, torch.Tensor)
        else {k: tuple(v.shape) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    )
    raise _fail(
        ValueError,
        WHERE,
        "at least one input row",
        f"inputs with 0 rows, shape {shape}",
        "Pass a non-empty batch (N >= 1 on dim 0).",
    )


def _settings(
    *,
    samples: int,
    output: str,
    strategy: str,
    tau: float | None,
    tol: float | None,
    memory_mb: float,
    heteroscedastic: bool,
    target: torch.Tensor | None,
    max_samples: int | None,
    min_samples: int | None,
    chunk_samples: int | None,
    seed: int | None,
    batch_size: int | None,
    features: Callable[..., Any] | None,
    head: Callable[..., Any] | None,
    progress: bool | None,
    consistent_masks: bool,
    keep_samples: bool,
) -> Settings:
    """Validate mc_predict's options (every message names ``mc_predict``)."""
    n_samples = _samples("samples", samples)
    out = check_choice(WHERE, output, "output", ("logits", "probs", "regression"))
    how = check_choice(WHERE, strategy, "strategy", ("auto", "loop", "batched"))
    tau = _positive("tau", tau, "Pass the noise precision 1 / sigma^2, e.g. tau=1.0.")
    tol = _positive("tol", tol, "Pass a standard-error tolerance such as tol=0.01.")
    memory = _positive("memory_mb", memory_mb, "Pass a budget in MiB such as 256.")
    hetero = check_bool(WHERE, heteroscedastic, "heteroscedastic")
    consistent = check_bool(WHERE, consistent_masks, "consistent_masks")
    keep = check_bool(WHERE, keep_samples, "keep_samples")
    if out != "regression" and (tau is not None or hetero or target is not None):
        raise _fail(
            ValueError,
            WHERE,
            "tau, heteroscedastic and target only with output='regression'",
            f"output={out!r}",
            "Pass output='regression' or drop those arguments.",
        )
    if hetero and tau is not None:
        raise _fail(
            ValueError,
            WHERE,
            "tau=None with heteroscedastic=True",
            tau,
            "A heteroscedastic head predicts its own noise; drop tau.",
        )
    if target is not None and not isinstance(target, torch.Tensor):
        raise _fail(
            TypeError,
            WHERE,
            "targets to be a tensor",
            type(target).__name__,
            "Pass torch.as_tensor(y).",
        )
    if target is not None and tau is None and not hetero:
        raise _fail(
            ValueError,
            WHERE,
            "tau or heteroscedastic=True to score targets",
            "tau=None",
            "Pass the noise precision tau (UCI protocol) or a heteroscedastic head.",
        )
    top, least = n_samples, n_samples
    if tol is None and (min_samples is not None or max_samples is not None):
        given = "min_samples" if min_samples is not None else "max_samples"
        value = min_samples if min_samples is not None else max_samples
        raise _fail(
            ValueError,
            WHERE,
            "min_samples / max_samples only with tol= (adaptive sampling)",
            f"{given}={value!r} and tol=None",
            "Pass tol=0.01 to stop each input once its standard error is below it, or "
            "drop them and pass samples= for a fixed count.",
        )
    if tol is not None:
        top = _samples("max_samples", max_samples if max_samples is not None else n_samples)
        lo = min_samples if min_samples is not None else min(10, top)
        least = _samples("min_samples", lo, minimum=2)
        if least > top:
            raise _fail(
                ValueError,
                WHERE,
                f"min_samples <= max_samples ({top})",
                least,
                "Lower min_samples or raise max_samples.",
            )
    chunk = None if chunk_samples is None else check_int(WHERE, chunk_samples, "chunk_samples")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise _fail(TypeError, WHERE, "seed to be an int or None", seed, "Pass seed=0.")
    if batch_size is not None:
        check_int(WHERE, batch_size, "batch_size")
    if (features is None) != (head is None):
        raise _fail(
            ValueError,
            WHERE,
            "features= and head= together",
            "only one of them",
            "Pass both (features: inputs -> features, head: features -> output) or neither.",
        )
    check_bool(WHERE, progress, "progress", optional=True)
    return Settings(
        output=out,
        strategy=how,
        max_samples=top,
        min_samples=least,
        tol=tol,
        tau=tau,
        heteroscedastic=hetero,
        memory_bytes=(memory or 256.0) * 2**20,
        chunk_samples=chunk,
        consistent=consistent,
        keep_samples=keep,
    )


@renamed_kwargs(targets="target")
def mc_predict(
    model: nn.Module,
    inputs: MCInputs,
    *,
    samples: int = 20,
    output: str = "logits",
    sites: SiteSelector | None = None,
    features: Callable[..., Any] | None = None,
    head: Callable[..., Any] | None = None,
    heteroscedastic: bool = False,
    tau: float | None = None,
    target: torch.Tensor | None = None,
    batch_size: int | None = None,
    tokenizer: Tokenizer | None = None,
    strategy: str = "auto",
    memory_mb: float = 256.0,
    chunk_samples: int | None = None,
    tol: float | None = None,
    min_samples: int | None = None,
    max_samples: int | None = None,
    seed: int | None = None,
    row_ids: torch.Tensor | Sequence[int] | None = None,
    consistent_masks: bool = False,
    keep_samples: bool = False,
    reuse_prefix: bool = True,
    progress: bool | None = None,
) -> MCResult:
    """Predict with Monte Carlo dropout and return exact uncertainty summaries.

    The model runs in eval mode except for the selected sites, which drop
    (``sites``, see :func:`dropkit.mc_mode`): BatchNorm uses and keeps its running
    statistics, and every module's mode is restored afterwards, also after an
    error, even if the model was left in training mode. For every batch the
    deterministic prefix runs once (automatic for ``nn.Sequential``, for
    Hugging Face models whose active sites lie outside the backbone, e.g.
    ``sites="head"``, and with ``sites="last:k"`` for the first ``L - k``
    repeated blocks, whose cached output the later blocks receive in the model's
    own forward, masks and position inputs rebuilt by it; explicit with
    ``features=``/``head=``), then the stochastic
    rest runs ``samples`` times, either one sample per call (``"loop"``) or
    ``K`` samples per call on inputs replicated ``K`` times (``"batched"``, ``K``
    under ``memory_mb``); ``"auto"`` times both on the first batch and batches
    only when clearly faster (recorded in ``extras``). Sample ``s`` draws its
    masks from a generator seeded by ``(seed, s)``, so all strategies and prefix
    reuse apply the same masks and agree up to floating-point rounding (matrix
    products of other shapes may differ in the last bit).

    Modes are switched by flag, never through the model's ``eval()`` /
    ``train()`` (an override of those does not run). Threads may call
    ``mc_predict`` on one shared model at once: each call draws its own masks
    from its own generators (a seeded call gives the same result as alone;
    forwards through sites on torch's one global generator take turns) and
    shares no sampling state with the others; the flags are held by reference
    count, so the model is exactly as before once the last call returns,
    whatever the order. Concurrent calls should select the same ``sites``
    (while both run, the later call's selection holds for both).

    Args:
        model: The model; called as ``model(x)`` or ``model(**mapping)``.
        inputs: A tensor ``(N, ...)``, a mapping of tensors (tokenizer output),
            or an iterable of batches (``DataLoader``; a tuple batch contributes
            its first element).
        samples: Number of MC samples ``T``, at most ``2**20`` (the maximum
            when ``tol`` is set and ``max_samples`` is not).
        output: What the model returns: ``"logits"`` (softmax per sample),
            ``"probs"`` (checked to be distributions) or ``"regression"``.
            Never guessed.
        sites: Which dropout sites drop (``None``: all; ``"head"``; ``"last:k"``,
            the last ``k`` repeated blocks and the head; ``"blocks:i-j"``; a
            kind; ...; see :func:`dropkit.mc_mode`). Prefix reuse at a block cut
            assumes each block reads only the previous block's output; for
            models that also read earlier blocks' outputs (U-Net skips, heads
            over all hidden states) pass ``reuse_prefix=False``.
        features: Explicit deterministic part, ``inputs -> features``.
        head: Explicit stochastic part, ``features -> output``.
        heteroscedastic: Regression head returns ``(mean, log_var)`` (a pair, or a
            tensor split in halves on its last dim).
        tau: Regression noise precision: ``aleatoric_var = 1 / tau``.
        target: Regression targets ``(N, ...)`` for ``log_likelihood`` (needs
            ``tau`` or ``heteroscedastic``). ``targets=`` is its deprecated name.
        batch_size: Cut tensor / mapping inputs (and loader batches) into pieces;
            with ``tokenizer``, texts tokenized per batch (default 32).
        tokenizer: A Hugging Face tokenizer, to predict on raw texts: ``inputs``
            is then a text or a list of texts, tokenized per batch with
            ``padding=True, truncation=True``. Every batch is moved to the
            model's device; ``result.labels`` holds ``config.id2label``'s names
            when the model has them.
        strategy: ``"auto"``, ``"loop"`` or ``"batched"``.
        memory_mb: Budget for one batched call, from the activation bytes
            measured on the first sample.
        chunk_samples: Fixed number of samples per batched call (overrides
            ``memory_mb``).
        tol: Adaptive sampling: stop an input once the standard error of its
            mean probability of the predicted class (regression: of its mean)
            is below ``tol``.
        min_samples: Samples before the first stop check (default
            ``min(10, max_samples)``, at least 2); only with ``tol``.
        max_samples: Cap for adaptive sampling (default ``samples``); only
            with ``tol``.
        seed: Base seed of the per-sample mask generators (``None``: drawn from
            torch's global generator). Sites that draw from torch's global
            generator (fused and eager attention, ``F.dropout`` in a custom
            forward) run inside a forked global state seeded from
            ``(seed, sample)``, so the same seed gives the same bits on one
            machine and the caller's global generator does not move.
        row_ids: One integer key per input row ``(N,)``, unique (default: the
            row's position in the inputs, counted across the batches of an
            iterable). With ``seed``, a row's masks at every row-keyed site
            (``extras["row_keyed_sites"]``: torch's and dropkit's dropout
            modules, timm's ``DropPath``, Hugging Face attention routed by
            ``fast_dropout(model, attention=True)``) depend only on ``(seed,
            sample, key, position within the row)``: not on the other rows,
            the batch size, the strategy or the thread count, so
            ``mc_predict(x[4:5], row_ids=[4], seed=s)`` repeats row 4 of
            ``mc_predict(x, seed=s)`` up to rounding. Sites in
            ``extras["global_rng_sites"]`` are reproduced by ``seed`` but
            depend on the batch.
        consistent_masks: Sample ``s`` applies the same masks to every input of
            every batch (BatchBALD-style joint samples); every active site must
            be controllable (module sites, no fused attention dropout).
        keep_samples: Keep the per-sample outputs ``(S, N, ...)`` (probabilities
            for classification; NaN where adaptive sampling stopped). Refused
            before it runs (from the row count, then from the first sample's
            size) when they would take more than half the machine's memory.
        reuse_prefix: Use the automatic prefix split.
        progress: Progress bar (tqdm): ``None`` when stderr is a terminal.

    Shape:
        - inputs: ``(N, ...)`` or batches thereof.
        - result: ``mean`` ``(N, C)`` / ``(N, ...)``; ``samples`` ``(S, N, ...)``.

    Returns:
        An :class:`MCResult`; ``extras`` records the strategy, chunk, prefix split,
        timings, forward calls and which sites had seeded masks.

    Raises:
        TypeError: If the model, inputs or an argument has the wrong type.
        ValueError: If an argument is out of range (``min_samples`` /
            ``max_samples`` without ``tol`` included), the inputs have no rows
            or a mapping's tensors disagree on rows, kept samples would not fit
            in memory, or the model's output does not fit ``output`` (e.g.
            ``"probs"`` rows not summing to 1).
        RuntimeError: If no selected site is stochastic (from ``mc_mode``).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
        >>> r = mc_predict(net, torch.randn(5, 4), samples=8, seed=0)
        >>> r.mean.shape, r.mutual_information.shape, r.extras["prefix"]
        (torch.Size([5, 3]), torch.Size([5]), 'sequential')
    """
    check_module(WHERE, model)
    check_bool(WHERE, reuse_prefix, "reuse_prefix")
    cfg = _settings(
        samples=samples,
        output=output,
        strategy=strategy,
        tau=tau,
        tol=tol,
        memory_mb=memory_mb,
        heteroscedastic=heteroscedastic,
        target=target,
        max_samples=max_samples,
        min_samples=min_samples,
        chunk_samples=chunk_samples,
        seed=seed,
        batch_size=batch_size,
        features=features,
        head=head,
        progress=progress,
        consistent_masks=consistent_masks,
        keep_samples=keep_samples,
    )
    total: int | None
    if tokenizer is not None:
        batches, total = text_batches(inputs, tokenizer, batch_size)
    else:
        check_not_texts(inputs)
        _check_rows(inputs)
        batches, total = iter_batches(inputs, batch_size)
    device = model_device(model)
    _check_not_empty(inputs, total)
    if cfg.keep_samples and total is not None:
        # before any forward: at least 2 float32 classes (1 value for regression) per row
        smallest = 4 if cfg.output == "regression" else 8
        check_kept_bytes(cfg.max_samples, total, smallest, exact=False)
    keys = row_keys(row_ids, total)
    if target is not None and total is not None and target.shape[0] != total:
        raise _fail(
            ValueError,
            WHERE,
            f"target with {total} rows (one per input)",
            tuple(target.shape),
            "Pass one target per input, in input order.",
        )
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    from dropkit.sites.modes import open_mc_mode

    bar = progress_bar(progress, total)
    parts: list[MCResult] = []
    try:
        # Eval mode for everything but the selected sites (BatchNorm running statistics,
        # unselected dropout off) even if the model was left in training mode: flags are
        # switched directly (no user eval()/train() override runs) and held by reference
        # count, so concurrent calls on one model restore it in any order.
        with torch.no_grad(), open_mc_mode(model, sites, eval_others=True) as handle:
            engine = Engine(
                model,
                handle.enabled,
                cfg,
                seed=int(seed),
                features=features,
                head=head,
                reuse_prefix=bool(reuse_prefix),
                blocks=_depth_selected(sites),
            )
            engine.total_rows = total
            with engine.control:
                offset = 0
                for batch in batches:
                    batch = to_device(batch, device)
                    _check_rows(batch)
                    here = batch_keys(keys, offset, rows_of(batch))
                    part, n = engine.predict_batch(batch, target, offset, here)
                    parts.append(part)
                    offset += n
                    if bar is not None:
                        bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    if not parts:
        raise _fail(
            ValueError,
            WHERE,
            "at least one batch",
            "an empty iterable",
            "Pass a non-empty tensor or loader.",
        )
    if target is not None and offset != target.shape[0]:
        raise _fail(
            ValueError,
            WHERE,
            f"target with {offset} rows (one per input)",
            tuple(target.shape),
            "Pass one target per input, in input order.",
        )
    if keys is not None and offset != keys.numel():
        raise _fail(
            ValueError,
            WHERE,
            f"{offset} row_ids (one per input)",
            keys.numel(),
            "Pass one key per input row, in input order.",
        )
    result = MCResult.concat(parts)
    result.extras = engine.extras()
    if result.task == "classification":
        result.labels = label_names(model, int(result.mean.shape[-1]))
    return result

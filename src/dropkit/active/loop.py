"""The pool-based active-learning loop (Gal, Islam and Ghahramani, 2017).

Start from a small labelled set; repeat: train a fresh model on the labelled
set with the user's ``train_fn``, record its test accuracy, score the unlabelled
pool with MC dropout in streamed batches, and move the ``acquisition_size``
best-scoring inputs into the labelled set, until the label ``budget`` (or a
target accuracy) is reached. The learning curve is labels vs accuracy.

References:
    Gal, Islam, Ghahramani (2017). Deep Bayesian active learning with image
    data. ICML.
    Kirsch, van Amersfoort, Gal (2019). BatchBALD. NeurIPS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from dropkit._validation import check_bool, check_choice, check_int, renamed_kwargs
from dropkit.active.acquisition import ACQUISITIONS, top_k
from dropkit.active.batch_bald import batch_bald
from dropkit.baselines.softmax import softmax_predict
from dropkit.uncertainty.result import MCResult

WHERE = "run_active_learning"
NAMES = (*ACQUISITIONS, "batch_bald")
_CHUNK_SEED_STRIDE = 1_000_003


@dataclass
class ActiveLearningResult:
    """A learning curve: test accuracy after each round of acquisition.

    Attributes:
        acquisition: Name of the acquisition function.
        labels: Labelled-set size at each evaluation.
        accuracy: Test accuracy of the model trained on that many labels.
        acquired: Pool indices acquired after each evaluation.
        initial: Pool indices of the initial labelled set.
        seconds: Wall time of the whole loop.
    """

    acquisition: str
    labels: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    acquired: list[list[int]] = field(default_factory=list)
    initial: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def labels_to_reach(self, accuracy: float) -> int | None:
        """Fewest labels at which test accuracy first reached ``accuracy`` (None if never)."""
        for n, acc in zip(self.labels, self.accuracy):
            if acc >= accuracy:
                return n
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@renamed_kwargs(labels="target")
def balanced_initial(
    target: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick ``n`` pool indices spread evenly over the classes present in ``target``.

    Each class gets ``n // C`` random members (capped by its size); the rest are
    filled uniformly at random from the remaining pool.

    Shape:
        - target: ``(N,)`` class labels; output ``(n,)`` int64.
    """
    classes = torch.unique(target)
    per = n // classes.numel()
    picked = []
    for c in classes.tolist():
        members = (target == c).nonzero().flatten()
        order = torch.randperm(members.numel(), generator=generator)
        picked.append(members[order[:per]])
    chosen = torch.cat(picked)
    rest = torch.ones(target.shape[0], dtype=torch.bool)
    rest[chosen] = False
    left = rest.nonzero().flatten()
    extra = left[torch.randperm(left.numel(), generator=generator)[: n - chosen.numel()]]
    return torch.cat([chosen, extra])


def _default_accuracy(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    probs = softmax_predict(model, test[0]).mean
    return float((probs.argmax(-1) == test[1]).double().mean())


@renamed_kwargs(pool_y="pool_target")
def run_active_learning(
    pool_x: torch.Tensor,
    pool_target: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    train_fn: Callable[[torch.Tensor, torch.Tensor, int], nn.Module],
    acquire: str | Callable[[MCResult], torch.Tensor] = "bald",
    initial: int | torch.Tensor = 20,
    acquisition_size: int = 10,
    budget: int = 200,
    samples: int = 20,
    seed: int = 0,
    pool_batch_size: int = 1024,
    target_accuracy: float | None = None,
    evaluate: Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], float] | None = None,
    progress: bool = False,
) -> ActiveLearningResult:
    """Run pool-based active learning and record the learning curve.

    Args:
        pool_x: Pool inputs ``(N, ...)`` (labels are revealed on acquisition).
        pool_target: Pool labels ``(N,)``.
        test: Test ``(inputs, labels)``.
        train_fn: ``(x, y, seed) -> model``: trains a fresh model from scratch.
        acquire: ``"bald"``, ``"batch_bald"``, ``"max_entropy"``,
            ``"variation_ratio"``, ``"margin"``, ``"mean_std"``, ``"random"``, or
            a callable ``MCResult -> scores (N,)`` (higher = acquire first).
        initial: Size of a class-balanced random initial set, or its indices.
        acquisition_size: Inputs acquired per round.
        budget: Stop once this many labels are used (the last round is cut to
            fit); evaluation happens after every round.
        samples: MC-dropout samples for scoring the pool.
        seed: Seeds the initial set, ``train_fn`` (``seed + round``), the MC masks
            and random acquisition.
        pool_batch_size: Pool inputs scored per ``mc_predict`` call (streamed).
        target_accuracy: Stop early once test accuracy reaches it.
        evaluate: ``(model, test) -> accuracy``; default: dropout-off accuracy.
        progress: Show a tqdm progress bar over the pool batches of each round.

    Shape:
        - pool_x: ``(N, ...)``; pool_target: ``(N,)``.

    Returns:
        An :class:`ActiveLearningResult`.

    Raises:
        ValueError: On unknown acquisition names, sizes out of range or
            mismatched pool shapes.
    """
    check_bool(WHERE, progress, "progress")
    n = _check_pool(pool_x, pool_target)
    name = acquire if callable(acquire) else check_choice(WHERE, acquire, "acquire", NAMES)
    size = check_int(WHERE, acquisition_size, "acquisition_size")
    budget = check_int(WHERE, budget, "budget")
    samples = check_int(WHERE, samples, "samples", minimum=2)
    chunk = check_int(WHERE, pool_batch_size, "pool_batch_size")
    gen = torch.Generator().manual_seed(seed)
    if isinstance(initial, torch.Tensor):
        labelled = initial.long().flatten()
    else:
        labelled = balanced_initial(pool_target, check_int(WHERE, initial, "initial"), gen)
    if labelled.numel() > min(budget, n):
        raise ValueError(
            f"{WHERE}: expected an initial set within the budget ({min(budget, n)}), "
            f"but got {labelled.numel()}. Raise budget or shrink initial."
        )
    is_labelled = torch.zeros(n, dtype=torch.bool)
    is_labelled[labelled] = True
    out = ActiveLearningResult(
        acquisition=getattr(acquire, "__name__", "custom") if callable(acquire) else str(name),
        initial=labelled.tolist(),
    )
    score = _evaluate_fn(evaluate)
    start = time.perf_counter()
    for step in range(n + 1):
        idx = is_labelled.nonzero().flatten()
        model = train_fn(pool_x[idx], pool_target[idx], seed + step)
        out.labels.append(int(idx.numel()))
        out.accuracy.append(float(score(model, test)))
        done = target_accuracy is not None and out.accuracy[-1] >= target_accuracy
        k = min(size, budget - idx.numel(), n - idx.numel())
        if done or k <= 0:
            break
        unlabelled = (~is_labelled).nonzero().flatten()
        picked = _acquire(
            model, pool_x, unlabelled, acquire, k, samples, seed + step, chunk, gen, progress
        )
        is_labelled[picked] = True
        out.acquired.append(picked.tolist())
    out.seconds = time.perf_counter() - start
    return out


def _check_pool(pool_x: Any, pool_target: Any) -> int:
    if not isinstance(pool_x, torch.Tensor) or not isinstance(pool_target, torch.Tensor):
        raise TypeError(
            f"{WHERE}: expected pool_x and pool_target to be tensors, but got "
            f"({type(pool_x).__name__}, {type(pool_target).__name__}). Pass tensors."
        )
    if (
        pool_target.dim() != 1
        or pool_x.shape[0] != pool_target.shape[0]
        or pool_target.numel() == 0
    ):
        raise ValueError(
            f"{WHERE}: expected pool_target of shape ({pool_x.shape[0]},) matching pool_x, "
            f"but got {tuple(pool_target.shape)}. Pass one label per pool input."
        )
    return int(pool_target.shape[0])


def _evaluate_fn(
    evaluate: Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], float] | None,
) -> Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], float]:
    return _default_accuracy if evaluate is None else evaluate


def _acquire(
    model: nn.Module,
    pool_x: torch.Tensor,
    unlabelled: torch.Tensor,
    acquire: Any,
    k: int,
    samples: int,
    seed: int,
    chunk: int,
    gen: torch.Generator,
    progress: bool,
) -> torch.Tensor:
    """Return ``k`` pool indices chosen among ``unlabelled``."""
    if acquire == "random":
        return unlabelled[torch.randperm(unlabelled.numel(), generator=gen)[:k]]
    from dropkit.uncertainty import mc_predict

    joint = acquire == "batch_bald"
    bar = None
    if progress:
        from dropkit._optional import require

        bar = require("tqdm", "report", WHERE).tqdm(total=unlabelled.numel(), desc="scoring pool")
    scores, kept = [], []
    try:
        for start in range(0, unlabelled.numel(), chunk):
            rows = unlabelled[start : start + chunk]
            # Joint samples need one seed for every chunk (same masks for all
            # inputs); otherwise each chunk gets its own masks.
            chunk_seed = seed if joint else seed + _CHUNK_SEED_STRIDE * (start // chunk)
            res = mc_predict(
                model,
                pool_x[rows],
                samples=samples,
                output="logits",
                seed=chunk_seed,
                consistent_masks=joint,
                keep_samples=joint,
                progress=False,
            )
            if joint and res.samples is not None:
                kept.append(res.samples.double())  # (S, chunk, C)
            else:
                fn = acquire if callable(acquire) else ACQUISITIONS[acquire]
                scores.append(fn(res).double())
            if bar is not None:
                bar.update(rows.numel())
    finally:
        if bar is not None:
            bar.close()
    if joint:
        return unlabelled[batch_bald(torch.cat(kept, 1), k, generator=gen).indices]
    return unlabelled[top_k(torch.cat(scores), k)]

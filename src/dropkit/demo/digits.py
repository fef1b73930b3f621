"""The one digits pipeline: data split, MLP, trainer and evaluator.

scikit-learn's 8x8 digits (1,797 images bundled with it, no download) serve
``dropkit demo``, ``dropkit bench digits`` and the ``digits`` task of
``dropkit sweep``. All three call the functions here; where they differ on
purpose, the difference is an argument:

=================  ==========  ======================  ====================
argument           demo        bench digits            sweep task
=================  ==========  ======================  ====================
``classes``        0-4         0-4; all ten (active    all ten
                               learning)
``fractions``      25/25/50    60/20/20                75/25 (no test)
``stratify``       no          yes                     no
``standardize``    yes         no                      no
``dropout``        dropkit's   torch's                 torch's, also input
trainer            batch 64    full batch              batch 64
=================  ==========  ======================  ====================

The images of the classes outside ``classes`` are the OOD set.
Pixels are scaled to ``[0, 1]`` (``/ 16``, exact in float32).

References:
    Srivastava et al. (2014), "Dropout: A Simple Way to Prevent Neural
    Networks from Overfitting", JMLR.
    Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from dropkit._optional import require
from dropkit._validation import _fail

if TYPE_CHECKING:
    from dropkit.baselines.compare import Comparison
    from dropkit.baselines.ensemble import DeepEnsemble

IN_CLASSES = (0, 1, 2, 3, 4)
OOD_CLASSES = (5, 6, 7, 8, 9)
ALL_CLASSES = IN_CLASSES + OOD_CLASSES
STD_FLOOR = 0.1  # standardising divides by max(std, 0.1): border pixels are nearly constant
N_FEATURES = 64

Pair = tuple[torch.Tensor, torch.Tensor]


def load_digits(caller: str = "load_digits") -> Pair:
    """All digits images, scaled to ``[0, 1]``, and their labels.

    Args:
        caller: Named in the error when scikit-learn is missing.

    Shape:
        - Output: images ``(1797, 64)`` float32, labels ``(1797,)`` int64.

    Raises:
        ImportError: Without scikit-learn (the ``metrics`` extra).
    """
    datasets = require("sklearn.datasets", "metrics", caller)
    x_np, y_np = datasets.load_digits(return_X_y=True)
    # k / 16 is exact in float32, so the order of cast and division does not matter
    x = torch.as_tensor(x_np, dtype=torch.float32) / 16.0
    return x, torch.as_tensor(y_np, dtype=torch.int64)


@dataclass(frozen=True, eq=False)
class DigitsSplit:
    """One split of digits: in-distribution train / validation / test and OOD.

    Attributes:
        x_train: Training images ``(N_train, 64)``; ``y_train`` their labels.
        x_val: Validation images; ``y_val`` their labels.
        x_test: Test images (empty for a two-part split); ``y_test``.
        x_ood: Every image of the classes not in ``classes`` (empty when all
            ten are in).
        classes: The in-distribution classes.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_ood: torch.Tensor
    classes: tuple[int, ...]

    @property
    def train(self) -> Pair:
        """``(x_train, y_train)``."""
        return self.x_train, self.y_train

    @property
    def val(self) -> Pair:
        """``(x_val, y_val)``."""
        return self.x_val, self.y_val

    @property
    def test(self) -> Pair:
        """``(x_test, y_test)``."""
        return self.x_test, self.y_test


def _check_split(caller: str, classes: Sequence[int], fractions: Sequence[float]) -> None:
    # 1e-9: many float64 eps, room for the rounding of fractions written as 1 - f
    in_range = all(0.0 <= f <= 1.0 for f in fractions) and sum(fractions) <= 1.0 + 1e-9
    if len(fractions) not in (2, 3) or not in_range:
        what = "2 or 3 fractions in [0, 1] summing to at most 1 (train, validation[, test])"
        fix = "Pass e.g. fractions=(0.6, 0.2, 0.2)."
        raise _fail(ValueError, caller, what, tuple(fractions), fix)
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(ALL_CLASSES):
        fix = "Pass e.g. classes=(0, 1, 2, 3, 4)."
        raise _fail(ValueError, caller, "distinct classes among 0-9", tuple(classes), fix)


def split_indices(
    y: torch.Tensor, fractions: Sequence[float], *, stratify: bool, generator: torch.Generator
) -> list[torch.Tensor]:
    """Random index parts of ``y``: each part but the last takes its fraction, the last the rest.

    Unstratified: one permutation, part sizes ``int(f * n)``. Stratified: one
    permutation per class (in class order), part sizes ``round(f * n_c)``, the
    parts holding class after class.

    Args:
        y: Labels ``(N,)``.
        fractions: One fraction per part.
        stratify: Split each class on its own.
        generator: Draws the permutations.

    Shape:
        - y: ``(N,)``; every part: ``(N_part,)``.

    Returns:
        One index tensor per part; together a permutation of ``range(N)``.

    Example:
        >>> y = torch.tensor([0] * 10 + [1] * 5)
        >>> g = torch.Generator().manual_seed(0)
        >>> [len(p) for p in split_indices(y, (0.6, 0.2, 0.2), stratify=True, generator=g)]
        [9, 3, 3]
    """
    if not stratify:
        order = torch.randperm(len(y), generator=generator)
        sizes = [int(f * len(order)) for f in fractions[:-1]]
        cuts = [0]
        for size in sizes:
            cuts.append(cuts[-1] + size)
        return [order[a:b] for a, b in zip(cuts, cuts[1:])] + [order[cuts[-1] :]]
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        start = 0
        for i, f in enumerate(fractions):
            stop = idx.numel() if i == len(fractions) - 1 else start + round(f * idx.numel())
            parts[i].append(idx[start:stop])
            start = stop
    return [torch.cat(p) for p in parts]


def split_digits(
    seed: int,
    *,
    classes: Sequence[int] = IN_CLASSES,
    fractions: Sequence[float] = (0.25, 0.25, 0.50),
    stratify: bool = False,
    standardize: bool = False,
    caller: str = "split_digits",
) -> DigitsSplit:
    """Split digits into in-distribution train / validation / test and OOD.

    The images of ``classes`` are permuted by a generator seeded with
    ``seed`` and cut by ``fractions``; with two fractions there is no test
    part. ``standardize`` subtracts the training mean per pixel and divides by
    the training standard deviation (at least ``0.1``), OOD images included.

    Args:
        seed: Seed of the permutation.
        classes: The in-distribution classes; the others are OOD.
        fractions: Train, validation and (optionally) test fractions; the
            last part takes the rest.
        stratify: Permute and cut each class on its own (sizes rounded), so
            every part holds the classes in proportion.
        standardize: Standardise with the training statistics.
        caller: Named in errors.

    Returns:
        The split.

    Raises:
        ValueError: On fractions or classes out of range.

    Example:
        >>> s = split_digits(0, fractions=(0.6, 0.2, 0.2), stratify=True)
        >>> len(s.y_train), len(s.y_val), len(s.y_test), len(s.x_ood)
        (541, 180, 180, 896)
    """
    _check_split(caller, classes, fractions)
    x, y = load_digits(caller)
    inside = torch.isin(y, torch.tensor(tuple(classes)))
    x_in, y_in = x[inside], y[inside]
    parts = split_indices(
        y_in, fractions, stratify=stratify, generator=torch.Generator().manual_seed(seed)
    )
    if len(parts) == 2:
        parts.append(parts[1][:0])
    tr, va, te = parts
    x_ood = x[~inside]
    if not standardize:
        return DigitsSplit(
            x_in[tr], y_in[tr], x_in[va], y_in[va], x_in[te], y_in[te], x_ood, tuple(classes)
        )
    mean = x_in[tr].mean(0)
    std = x_in[tr].std(0).clamp_min(STD_FLOOR)

    def norm(t: torch.Tensor) -> torch.Tensor:
        return (t - mean) / std

    return DigitsSplit(
        norm(x_in[tr]), y_in[tr], norm(x_in[va]), y_in[va], norm(x_in[te]), y_in[te],
        norm(x_ood), tuple(classes),
    )  # fmt: skip


def build_mlp(
    n_out: int,
    *,
    hidden: int,
    p: float,
    seed: int,
    input_dropout: bool = False,
    dropout: Callable[[float], nn.Module] | None = None,
) -> nn.Sequential:
    """The digits MLP: 64 -> H -> H -> n_out, ReLU, dropout after each hidden layer.

    Args:
        n_out: Classes.
        hidden: Hidden width ``H``.
        p: Drop rate of every dropout layer.
        seed: Seeds torch's global generator before the weights are drawn.
        input_dropout: Also drop input pixels (the sweep task: one site per
            layer).
        dropout: The dropout layer, called with ``p``; default
            :class:`dropkit.nn.Dropout` (the benchmark and the sweep use
            :class:`torch.nn.Dropout`).

    Returns:
        The network, in training mode.
    """
    from dropkit.nn import Dropout

    drop = Dropout if dropout is None else dropout
    torch.manual_seed(seed)
    layers: list[nn.Module] = [drop(p)] if input_dropout else []
    layers += [
        nn.Linear(N_FEATURES, hidden), nn.ReLU(), drop(p),
        nn.Linear(hidden, hidden), nn.ReLU(), drop(p),
        nn.Linear(hidden, n_out),
    ]  # fmt: skip
    return nn.Sequential(*layers)


def build_concrete_mlp(n_out: int, *, hidden: int, n_train: int, seed: int) -> nn.Sequential:
    """The digits MLP with :class:`dropkit.nn.ConcreteDropout` around each linear layer.

    The regularisers follow Gal et al. (2017) for ``n_train`` training
    examples: dropout regulariser ``2 / N``, weight regulariser ``l^2 / N``
    with length scale ``l = 1e-2``; the rate starts at ``0.1`` on the input and
    ``0.2`` on the hidden layers.

    Args:
        n_out: Classes.
        hidden: Hidden width.
        n_train: Training examples ``N``.
        seed: Seeds torch's global generator before the weights are drawn.

    Returns:
        The network, in training mode.
    """
    from dropkit.nn import ConcreteDropout

    torch.manual_seed(seed)

    def layer(n_in: int, n_layer_out: int, p0: float) -> nn.Module:
        return ConcreteDropout(
            nn.Linear(n_in, n_layer_out),
            p=p0,
            weight_regularizer=1e-4 / n_train,
            dropout_regularizer=2.0 / n_train,
        )

    return nn.Sequential(
        layer(N_FEATURES, hidden, 0.1), nn.ReLU(), layer(hidden, hidden, 0.2), nn.ReLU(),
        layer(hidden, n_out, 0.2),
    )  # fmt: skip


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    batch_size: int | None = None,
    order_seed: int = 0,
    seed: int | None = None,
    penalty: Callable[[], torch.Tensor | float] | None = None,
    before_step: Callable[[int], object] | None = None,
    before_epoch: Callable[[int], object] | None = None,
    after_epoch: Callable[[int], object] | None = None,
) -> nn.Module:
    """Train with Adam on cross-entropy, in place; the model ends in eval mode.

    Args:
        model: The network (returns logits).
        x: Training images.
        y: Training labels.
        epochs: Passes over the data (full batch: optimiser steps).
        lr: Adam learning rate.
        weight_decay: Adam's L2 weight decay.
        batch_size: Mini-batch size, shuffled every epoch by a generator
            seeded with ``order_seed``; None for full-batch steps in data order.
        order_seed: Seed of the mini-batch order.
        seed: Reseeds torch's global generator (the dropout masks) before
            training; None continues its stream.
        penalty: Added to every batch loss (e.g. ConcreteDropout's regulariser).
        before_step: Called with the global step index before each step
            (e.g. a :class:`dropkit.training.DropoutScheduler`).
        before_epoch: Called with the epoch index (from 0) before each epoch.
        after_epoch: Called with the epoch index after each epoch; it may
            raise to stop (e.g. ``optuna.TrialPruned``).

    Shape:
        - x: ``(N, 64)``; y: ``(N,)``.

    Returns:
        ``model``.
    """
    if seed is not None:
        torch.manual_seed(seed)
    order = torch.Generator().manual_seed(order_seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    step = 0
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        model.train()
        batches = (
            [None]
            if batch_size is None
            else torch.randperm(len(y), generator=order).split(batch_size)
        )
        for idx in batches:
            if before_step is not None:
                before_step(step)
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            loss = nn.functional.cross_entropy(model(xb), yb)
            if penalty is not None:
                loss = loss + penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if after_epoch is not None:
            after_epoch(epoch)
    return model.eval()


def evaluate(
    model: nn.Module,
    split: DigitsSplit,
    *,
    samples: int,
    seed: int,
    ensemble: DeepEnsemble | Sequence[nn.Module] | None = None,
) -> Comparison:
    """:func:`dropkit.baselines.compare_uncertainty` on a split.

    Test set: ``split.test``; OOD: ``split.x_ood``; temperature scaling on
    ``split.val``; Laplace fitted on ``split.train``.

    Args:
        model: The trained dropout network.
        split: The data.
        samples: MC-dropout samples.
        seed: Seed of the MC masks and Laplace draws.
        ensemble: Members for the deep-ensemble row.

    Returns:
        The comparison (softmax, MC dropout, ensemble when given, Laplace).
    """
    from dropkit.baselines.compare import compare_uncertainty

    return compare_uncertainty(
        model, split.test, ood=split.x_ood, val=split.val, train=split.train,
        ensemble=ensemble, samples=samples, seed=seed,
    )  # fmt: skip

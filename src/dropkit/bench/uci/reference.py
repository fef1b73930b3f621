"""Train one UCI dropout MLP the ordinary way: ``torch.nn`` + autograd + Adam.

The sequential reference for :class:`~dropkit.bench.uci.batched.BatchedMLP` and the
baseline of ``dropkit bench sweep``. It draws its initial weights, data order
and masks from the same :class:`~dropkit.bench.uci.streams.ModelStream` as the
batched trainer, so with the same seed both reach the same weights up to float
rounding. Model and loss follow Gal & Ghahramani (2016): ``dropout(p) ->
Linear(h) -> ReLU -> dropout(p) -> Linear(1)``, ``MSE + reg * sum(W ** 2)``,
optimised by ``torch.optim.Adam`` (Kingma & Ba 2015).
"""

from __future__ import annotations

import torch
from torch import nn

from dropkit.bench.uci.streams import ModelStream, Seed, keep_scale, keep_threshold


class ReferenceMLP(nn.Module):
    """The UCI network with masks supplied by the caller.

    Args:
        d: Input width.
        n_hidden: Hidden units.

    Shape:
        - Input: ``(N, d)`` and a mask-word tensor ``(N, d + n_hidden)``.
        - Output: ``(N,)``.
    """

    def __init__(self, d: int, n_hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d, n_hidden)
        self.out = nn.Linear(n_hidden, 1)

    def forward(
        self, x: torch.Tensor, words: torch.Tensor, threshold: int, scale: float
    ) -> torch.Tensor:
        """Apply input dropout, hidden layer, ReLU, hidden dropout and output layer."""
        d = x.shape[1]
        keep = (words >= threshold).to(x.dtype) * scale
        h = torch.relu(self.hidden(x * keep[:, :d]))
        return self.out(h * keep[:, d:]).squeeze(-1)


def train_one(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    p: float,
    reg: float,
    seed: Seed,
    epochs: int,
    n_hidden: int = 50,
    batch_size: int = 128,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    dtype: torch.dtype = torch.float32,
) -> tuple[ReferenceMLP, ModelStream]:
    """Train one model for ``epochs`` epochs, one mini-batch at a time.

    Args:
        x: Standardised inputs.
        y: Standardised targets.
        p: Drop probability (input and hidden).
        reg: Weight-decay factor on the sum of squared weights (not biases).
        seed: Seed of the model's :class:`ModelStream`.
        epochs: Passes over the data, each in a fresh random order.
        n_hidden: Hidden units.
        batch_size: Mini-batch rows (the last batch of an epoch may be short).
        lr: Adam learning rate.
        betas: Adam moment decays.
        eps: Adam epsilon.
        dtype: Floating dtype.

    Shape:
        - x: ``(N, d)``; y: ``(N,)``.

    Returns:
        The trained model and its stream (positioned after training, ready to
        draw prediction masks).
    """
    n, d = x.shape
    stream = ModelStream(seed)
    model = ReferenceMLP(d, n_hidden).to(dtype)
    with torch.no_grad():
        model.hidden.weight.copy_(torch.from_numpy(stream.glorot(d, n_hidden)).T)
        model.out.weight.copy_(torch.from_numpy(stream.glorot(n_hidden, 1)).T)
        model.hidden.bias.zero_()
        model.out.bias.zero_()
    x, y = x.to(dtype), y.to(dtype)
    threshold, scale = keep_threshold(p), keep_scale(p)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    for _ in range(epochs):
        order = torch.from_numpy(stream.permutation(n))
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            words = torch.from_numpy(stream.mask_words(len(rows), d + n_hidden))
            pred = model(x[rows], words, threshold, scale)
            penalty = model.hidden.weight.pow(2).sum() + model.out.weight.pow(2).sum()
            loss = torch.mean((pred - y[rows]) ** 2) + reg * penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model, stream

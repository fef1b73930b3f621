from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dropkit._io import read_torch, write_torch
from dropkit.bench.uci.batched import BatchedMLP
from dropkit.bench.uci.reference import train_one
from dropkit.bench.uci.streams import ModelStream, keep_scale, keep_threshold
from dropkit.kernels import effective_p

BACKENDS = ["numba", "torch"]


def _data(gen: torch.Generator, sizes: list[int], d: int = 5) -> tuple[list, list]:
    xs = [torch.randn(n, d, generator=gen, dtype=torch.float64) for n in sizes]
    ys = [
        x[:, 0] - 0.5 * x[:, 1] + 0.1 * torch.randn(len(x), generator=gen, dtype=x.dtype)
        for x in xs
    ]
    return xs, ys


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_equals_one_by_one_exactly(generator: torch.Generator, backend: str) -> None:
    # unequal sizes exercise padding and models skipping steps; batch 16 gives short last batches
    xs, ys = _data(generator, [70, 41, 90])
    p, reg, seeds = [0.05, 0.3, 0.005], [1e-3, 1e-4, 1e-2], [(0, 1), (0, 2), (9,)]
    net = BatchedMLP(
        xs,
        ys,
        p=p,
        reg=reg,
        seeds=seeds,
        n_hidden=12,
        batch_size=16,
        dtype=torch.float64,
        backend=backend,
    )
    net.train(4)
    w1, b1, w2, b2 = net.weights
    for i in range(3):
        ref, _ = train_one(
            xs[i],
            ys[i],
            p=p[i],
            reg=reg[i],
            seed=seeds[i],
            epochs=4,
            n_hidden=12,
            batch_size=16,
            dtype=torch.float64,
        )
        with torch.no_grad():
            for got, want in [
                (w1[i], ref.hidden.weight.T),
                (b1[i, 0], ref.hidden.bias),
                (w2[i], ref.out.weight.T),
                (b2[i, 0], ref.out.bias),
            ]:
                # same masks and data order; the batched matmuls sum in another order
                # than train_one's: each of the 24 SGD steps may move a weight by about
                # K * eps (K = 16 rows), 24 * 16 * 2.2e-16 ~ 1e-13; 1e-12 leaves 10x
                torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert net.steps.tolist() == [4 * math.ceil(n / 16) for n in (70, 41, 90)]


def test_float32_backends_agree_with_reference(generator: torch.Generator) -> None:
    xs, ys = _data(generator, [64])
    x32, y32 = xs[0].float(), ys[0].float()
    ref, _ = train_one(x32, y32, p=0.1, reg=1e-3, seed=3, epochs=3, n_hidden=10, batch_size=16)
    for backend in BACKENDS:
        net = BatchedMLP(
            [x32],
            [y32],
            p=[0.1],
            reg=[1e-3],
            seeds=[3],
            n_hidden=10,
            batch_size=16,
            backend=backend,
        )
        net.train(3)
        with torch.no_grad():
            # float32, other summation order: 12 steps of about sqrt(16) * eps (1.2e-7)
            # each, ~6e-6 on O(1) weights; far below what one changed mask would move
            torch.testing.assert_close(net.weights[0][0], ref.hidden.weight.T, rtol=0, atol=1e-5)


def test_models_have_independent_masks_and_data_order() -> None:
    a, b = ModelStream((0, 0)), ModelStream((0, 1))
    assert not np.array_equal(a.permutation(100), b.permutation(100))
    # same stream restarted: identical; words drawn in pieces equal words drawn at once
    c, d = ModelStream(5), ModelStream(5)
    whole = c.mask_words(10, 6)
    pieces = np.concatenate([d.mask_words(4, 6), d.mask_words(6, 6)])
    np.testing.assert_array_equal(whole, pieces)


@pytest.mark.parametrize("p", [0.005, 0.1, 0.5])
def test_mask_drop_rate_within_binomial_bounds(p: float) -> None:
    words = np.concatenate([ModelStream(i).mask_words(2000, 50) for i in range(4)])
    n = words.size
    dropped = int((words < keep_threshold(p)).sum())
    q = effective_p(p)
    assert abs(q - p) <= 0.5 / 65536
    assert abs(dropped - n * q) <= 6 * math.sqrt(n * q * (1 - q))
    assert keep_scale(p) == pytest.approx(1 / (1 - q))


def test_masks_of_two_models_are_uncorrelated() -> None:
    p = 0.5
    a = ModelStream(1).mask_words(4000, 25) < keep_threshold(p)
    b = ModelStream(2).mask_words(4000, 25) < keep_threshold(p)
    n = a.size
    both = int((a & b).sum())  # independent: Binomial(n, 1/4)
    assert abs(both - n / 4) <= 6 * math.sqrt(n * 0.25 * 0.75)


def test_batched_and_sequential_losses_agree_statistically(generator: torch.Generator) -> None:
    # different seeds: the two trainers are samples of one distribution of trained models
    x = torch.randn(48, 4, generator=generator)
    y = x[:, 0] + 0.3 * torch.randn(48, generator=generator)
    k = 24
    net = BatchedMLP(
        [x] * k,
        [y] * k,
        p=[0.2] * k,
        reg=[1e-3] * k,
        seeds=list(range(k)),
        n_hidden=16,
        batch_size=16,
    )
    net.train(6)
    batched = net.last_loss.numpy()
    sequential = []
    for seed in range(1000, 1000 + k):
        model, stream = train_one(
            x, y, p=0.2, reg=1e-3, seed=seed, epochs=6, n_hidden=16, batch_size=16
        )
        sequential.append(_epoch_loss(model, stream, x, y, 0.2))
    seq = np.array(sequential)
    se = math.sqrt(batched.var(ddof=1) / k + seq.var(ddof=1) / k)
    assert abs(batched.mean() - seq.mean()) <= 6 * se


def _epoch_loss(model, stream, x, y, p):  # one more epoch's mean squared residual, no update
    words = torch.from_numpy(stream.mask_words(len(x), x.shape[1] + 16))
    with torch.no_grad():
        return float(((model(x, words, keep_threshold(p), keep_scale(p)) - y) ** 2).mean())


@pytest.mark.parametrize("backend", BACKENDS)
def test_checkpoint_resumes_bit_for_bit(tmp_path, generator: torch.Generator, backend) -> None:
    xs, ys = _data(generator, [40, 33])
    kw = dict(
        p=[0.1, 0.2], reg=[1e-3, 1e-3], seeds=[1, 2], n_hidden=8, batch_size=16, backend=backend
    )
    straight = BatchedMLP(xs, ys, **kw)
    straight.train(5)
    first = BatchedMLP(xs, ys, **kw)
    first.train(2)
    write_torch(tmp_path / "state.pt", first.state_dict())
    resumed = BatchedMLP(xs, ys, **kw)
    resumed.load_state_dict(read_torch(tmp_path / "state.pt"))
    resumed.train(3)
    assert resumed.epoch == 5
    assert torch.equal(resumed.flat, straight.flat)


def test_bad_arguments_raise_clear_errors() -> None:
    x, y = torch.randn(10, 3), torch.randn(10)
    with pytest.raises(ValueError, match=r"BatchedMLP: expected xs, ys, p, reg and seeds of one"):
        BatchedMLP([x], [y], p=[0.1, 0.2], reg=[0.0], seeds=[0])
    with pytest.raises(ValueError, match=r"BatchedMLP: expected every x of shape \(n, 3\)"):
        BatchedMLP([x, torch.randn(10, 4)], [y, y], p=[0.1, 0.1], reg=[0, 0], seeds=[0, 1])
    with pytest.raises(ValueError, match=r"BatchedMLP: expected p in \[0, 1\), but got 1.5"):
        BatchedMLP([x], [y], p=[1.5], reg=[0.0], seeds=[0])
    with pytest.raises(ValueError, match=r"BatchedMLP: expected reg >= 0, but got -1.0"):
        BatchedMLP([x], [y], p=[0.1], reg=[-1.0], seeds=[0])
    with pytest.raises(ValueError, match=r"BatchedMLP: expected backend to be one of"):
        BatchedMLP([x], [y], p=[0.1], reg=[0.0], seeds=[0], backend="cuda")
    net = BatchedMLP([x], [y], p=[0.1], reg=[0.0], seeds=[0], n_hidden=4)
    other = BatchedMLP([x, x], [y, y], p=[0.1, 0.1], reg=[0.0, 0.0], seeds=[0, 1], n_hidden=4)
    before = net.flat.clone()
    with pytest.raises(
        ValueError, match=r"BatchedMLP: expected a checkpoint of shape \(1, 21\), but got \(2, 21\)"
    ):
        net.load_state_dict(other.state_dict())
    assert torch.equal(net.flat, before)


@pytest.mark.parametrize("p", [0.0, 0.005, 0.1, 1 / 3, 0.5, 2.5 / 65536, 0.9, 1 - 2**-17 - 2**-30])
def test_streams_use_the_kernels_16_bit_quantisation(p: float) -> None:
    # one quantisation in dropkit: the UCI streams' threshold and scale are kernels.effective_p's
    q = effective_p(p)
    assert keep_threshold(p) == round(q * 65536) - 32768
    assert keep_scale(p) == 1 / (1 - q)  # both exact quotients of the same 16-bit integers

"""Statistics of the counter-based masks, with bounds computed from the distribution."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit.kernels import _ops, bernoulli_dropout, draw_seed, effective_p, seeded_dropout

N = 200_000
SIGMAS = 6.0


def _mask(seed: int, p: float, n: int = N) -> torch.Tensor:
    return seeded_dropout(torch.ones(n, dtype=torch.float64), p, seed) != 0


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9])
def test_drop_rate_within_binomial_bounds(p: float, generator: torch.Generator) -> None:
    q = effective_p(p)
    y = bernoulli_dropout(torch.ones(N), p, generator=generator)
    dropped = int((y == 0).sum())
    assert abs(dropped - N * q) <= SIGMAS * math.sqrt(N * q * (1 - q))


@pytest.mark.parametrize("p", [0.1, 0.6])
def test_expectation_preserved(p: float, generator: torch.Generator) -> None:
    c = 1.7
    q = effective_p(p)
    y = bernoulli_dropout(torch.full((N,), c, dtype=torch.float64), p, generator=generator)
    # mean of N iid c * Bernoulli(1-q) / (1-q): variance c^2 q / ((1-q) N)
    sd = c * math.sqrt(q / ((1 - q) * N))
    assert abs(float(y.mean()) - c) <= SIGMAS * sd


@pytest.mark.parametrize("lag", [1, 2, 3, 64, 768, 65536])
def test_no_correlation_between_neighbours(lag: int) -> None:
    m = _mask(2024, 0.5)
    # for independent bits the sample correlation is ~ N(0, 1/n)
    assert abs(_corr(m[:-lag], m[lag:])) <= SIGMAS / math.sqrt(N - lag)


def test_rows_of_a_matrix_uncorrelated() -> None:
    rows = seeded_dropout(torch.ones(256, 768), 0.5, 77) != 0
    assert abs(_corr(rows[:-1].flatten(), rows[1:].flatten())) <= SIGMAS / math.sqrt(255 * 768)


def test_consecutive_calls_uncorrelated(generator: torch.Generator) -> None:
    x = torch.ones(N)
    a = bernoulli_dropout(x, 0.5, generator=generator) != 0
    b = bernoulli_dropout(x, 0.5, generator=generator) != 0
    assert abs(_corr(a, b)) <= SIGMAS / math.sqrt(N)


@pytest.mark.parametrize("pair", [(0, 1), (1, 2), (2**32, 2**32 + 1), (123, 123 + 2**32)])
def test_related_seeds_uncorrelated(pair: tuple[int, int]) -> None:
    # users pass sequential seeds; splitmix64 key derivation must decorrelate them
    a, b = (_mask(s, 0.5) for s in pair)
    assert abs(_corr(a, b)) <= SIGMAS / math.sqrt(N)


def test_drop_counts_over_many_seeds_are_binomial() -> None:
    # 200 seeds x 1000 elements: the per-seed counts have the binomial variance
    p, n, seeds = 0.3, 1000, 200
    counts = torch.stack([(~_mask(s, p, n)).sum() for s in range(seeds)]).double()
    var = n * p * (1 - p)
    assert abs(float(counts.mean()) - n * p) <= SIGMAS * math.sqrt(var / seeds)
    # sample variance of a normal-ish sample: sd of s^2 ~ var * sqrt(2 / (seeds - 1))
    assert abs(float(counts.var()) - var) <= SIGMAS * var * math.sqrt(2 / (seeds - 1))


def test_same_seed_same_mask_for_any_thread_count() -> None:
    numba_kernel = _ops._backend("numba")
    if numba_kernel is None:
        pytest.skip("numba (the 'fast' extra) is not installed")
    x = torch.randn(4 * numba_kernel.PARALLEL_MIN + 123)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(seeded_dropout(x, 0.2, 31337))
            outs.append(seeded_dropout(x.clone(), 0.2, 31337, inplace=True))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], out) for out in outs[1:])


def test_manual_seed_reproduces_masks() -> None:
    x = torch.ones(5000)
    torch.manual_seed(5)
    a = bernoulli_dropout(x, 0.4)
    torch.manual_seed(5)
    b = bernoulli_dropout(x, 0.4)
    torch.manual_seed(6)
    c = bernoulli_dropout(x, 0.4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_one_seed_draw_per_call(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = bernoulli_dropout(torch.ones(5000), 0.4, generator=g)
    s = draw_seed(torch.Generator().manual_seed(seed))
    assert torch.equal(y, seeded_dropout(torch.ones(5000), 0.4, s))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_elements_sharing_a_hash_word_are_independent(p: float) -> None:
    # elements 2j and 2j+1 read the two halves of one hash word: both are
    # dropped with probability q**2 when the halves are independent
    q = effective_p(p)
    dropped = ~_mask(99, p, 2 * N)
    both = int((dropped[0::2] & dropped[1::2]).sum())
    assert abs(both - N * q * q) <= SIGMAS * math.sqrt(N * q * q * (1 - q * q))

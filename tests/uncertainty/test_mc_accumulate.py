"""Streaming reductions (MCAccumulator) against the naive MCResult.from_samples."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit.uncertainty import MCAccumulator, MCResult

CLS_FIELDS = (
    "mean",
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "variation_ratio",
    "std",
)
REG_FIELDS = ("mean", "std", "epistemic_var", "aleatoric_var", "log_likelihood")


def _same(a: MCResult, b: MCResult, fields: tuple[str, ...]) -> None:
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        # float64 sums over at most a few hundred samples, streamed in pieces vs all
        # at once: another summation order, ~S * eps ~ 1e-14, far inside 1e-12
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12, msg=name)
    assert torch.equal(a.samples_used, b.samples_used)  # integer counts: exact


def _stream(samples: torch.Tensor, cuts: list[int], **kw: object) -> MCAccumulator:
    acc = MCAccumulator(samples.shape[1], **kw)  # type: ignore[arg-type]
    bounds = [0, *sorted(set(cuts)), samples.shape[0]]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi > lo:
            acc.update(samples[lo:hi])
    return acc


@settings(max_examples=25, deadline=None)
@given(
    s=st.integers(1, 12),
    cuts=st.lists(st.integers(1, 11), max_size=4),
    tokens=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_classification_stream_equals_naive(s, cuts, tokens, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (s, 5, 3, 4) if tokens else (s, 5, 4)
    # sharp and flat rows, and exact ties for the variation ratio
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 4
    logits[:, 0] = 0.0
    probs = torch.softmax(logits, -1)
    acc = _stream(probs, [c for c in cuts if c < s], keep_samples=True)
    got = acc.result()
    _same(got, MCResult.from_samples(probs), CLS_FIELDS)
    assert torch.equal(got.samples, probs)


def test_row_subsets_equal_truncated_samples(generator):
    probs = torch.softmax(torch.randn(9, 6, 3, generator=generator, dtype=torch.float64), -1)
    acc = MCAccumulator(6, keep_samples=True)
    acc.update(probs[:4])
    rows = torch.tensor([1, 3, 4])
    acc.update(probs[4:9, rows], rows=rows)
    got = acc.result()
    assert got.samples_used.tolist() == [4, 9, 4, 9, 9, 4]
    for i, used in enumerate(got.samples_used.tolist()):
        ref = MCResult.from_samples(probs[:used, i : i + 1])
        for name in CLS_FIELDS:
            torch.testing.assert_close(getattr(got, name)[i : i + 1], getattr(ref, name))
    # rows that stopped are padded with NaN
    assert torch.isnan(got.samples[4:, 0]).all() and not torch.isnan(got.samples[:, 1]).any()


def _uci_ll(y_samples: torch.Tensor, y: torch.Tensor, tau: float) -> list[float]:
    """The UCI protocol formula, step 8 of data/uci/README.md, one point at a time."""
    out = []
    t = y_samples.shape[0]
    for i in range(y.shape[0]):
        terms = [-tau / 2 * (float(y[i]) - float(y_samples[s, i])) ** 2 for s in range(t)]
        top = max(terms)
        lse = top + math.log(sum(math.exp(v - top) for v in terms))
        out.append(lse - math.log(t) - math.log(2 * math.pi) / 2 + math.log(tau) / 2)
    return out


@pytest.mark.parametrize("tau", [0.5, 2000.0])
def test_regression_tau_loglik_is_uci_formula(generator, tau):
    y_s = torch.randn(7, 5, 1, generator=generator, dtype=torch.float64) + 3.0
    y = torch.randn(5, generator=generator, dtype=torch.float64) + 3.0
    acc = _stream(y_s, [2, 3], task="regression", tau=tau, target=y)
    got = acc.result()
    _same(got, MCResult.from_samples(y_s, task="regression", tau=tau, target=y), REG_FIELDS)
    torch.testing.assert_close(
        got.log_likelihood, torch.tensor(_uci_ll(y_s[..., 0], y, tau)).double()
    )
    assert torch.isfinite(got.log_likelihood).all()


def test_regression_heteroscedastic_equals_naive(generator):
    y_s = torch.randn(6, 4, 2, generator=generator, dtype=torch.float64)
    var = torch.rand(6, 4, 2, generator=generator, dtype=torch.float64) + 0.05
    y = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    acc = MCAccumulator(4, task="regression", heteroscedastic=True, target=y)
    acc.update(y_s[:1], noise_var=var[:1])
    acc.update(y_s[1:], noise_var=var[1:])
    ref = MCResult.from_samples(y_s, task="regression", noise_var=var, target=y)
    _same(acc.result(), ref, REG_FIELDS)
    # naive per-point mixture likelihood
    dens = torch.exp(-((y - y_s) ** 2) / (2 * var)) / torch.sqrt(2 * math.pi * var)
    torch.testing.assert_close(ref.log_likelihood, dens.prod(-1).mean(0).log())


def test_standard_error_of_predicted_class(generator):
    probs = torch.softmax(torch.randn(8, 3, 4, generator=generator, dtype=torch.float64), -1)
    acc = MCAccumulator(3)
    acc.update(probs[:1])
    assert torch.isinf(acc.standard_error()).all()
    acc.update(probs[1:])
    pred = probs.mean(0).argmax(-1)
    picked = probs[:, torch.arange(3), pred]  # (S, N)
    naive = picked.std(0, unbiased=True) / math.sqrt(8)
    torch.testing.assert_close(acc.standard_error(), naive)


def test_memory_does_not_grow_with_samples(generator):
    def buffer_bytes(samples: int) -> int:
        acc = MCAccumulator(4, task="regression", tau=1.0, target=torch.zeros(4))
        for _ in range(samples):
            acc.update(torch.randn(1, 4, generator=generator))
        return sum(t.numel() * t.element_size() for t in acc._b.values())

    assert buffer_bytes(3) == buffer_bytes(60)


def test_result_before_update_raises():
    with pytest.raises(RuntimeError, match=r"MCAccumulator.result: expected at least one sample"):
        MCAccumulator(2).result()


def test_heteroscedastic_update_needs_noise():
    acc = MCAccumulator(2, task="regression", heteroscedastic=True)
    with pytest.raises(ValueError, match=r"MCAccumulator.update: expected noise_var"):
        acc.update(torch.zeros(1, 2))


def test_concat_joins_rows_and_pads_samples(generator):
    a = torch.softmax(torch.randn(3, 2, 4, generator=generator, dtype=torch.float64), -1)
    b = torch.softmax(torch.randn(5, 3, 4, generator=generator, dtype=torch.float64), -1)
    ra = MCResult.from_samples(a, keep_samples=True)
    rb = MCResult.from_samples(b, keep_samples=True)
    both = MCResult.concat([ra, rb])
    torch.testing.assert_close(both.mean, torch.cat([ra.mean, rb.mean]))
    assert both.samples.shape == (5, 5, 4) and torch.isnan(both.samples[3:, :2]).all()
    with pytest.raises(ValueError, match=r"MCResult.concat: expected at least one result"):
        MCResult.concat([])
    reg = MCResult.from_samples(a[..., 0], task="regression")
    with pytest.raises(ValueError, match=r"MCResult.concat: expected results of one task"):
        MCResult.concat([ra, reg])


def test_from_samples_tau_and_noise_are_exclusive():
    with pytest.raises(ValueError, match=r"from_samples: expected tau=None with noise_var"):
        MCResult.from_samples(
            torch.zeros(2, 3), task="regression", tau=1.0, noise_var=torch.ones(2, 3)
        )

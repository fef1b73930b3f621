"""Rows independent of their batch: ``row_ids=`` and the row-keyed masks behind it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import dropkit.nn as dnn
from dropkit import fast_dropout, mc_predict
from dropkit.kernels import _hash, _ops, seeded_dropout
from dropkit.uncertainty import keyed
from dropkit.uncertainty.keyed import keyed_dropout, keyed_mask, row_seed, row_seeds

transformers = pytest.importorskip("transformers")

# -- the keyed masks equal the kernels' masks of each row's own seed ------------------


def test_row_seeds_match_the_python_reference():
    sigma = torch.tensor([0, 123, -(2**63), 2**63 - 1], dtype=torch.int64)
    keys = torch.tensor([0, 1, -7, 2**40, 2**62], dtype=torch.int64)
    want = [row_seed(s, k) for s in sigma.tolist() for k in keys.tolist()]
    assert row_seeds(sigma, keys).tolist() == want
    assert len(set(want)) == len(want)


@pytest.mark.parametrize("numel", [1, 7, 64, 1500, 3001])
@pytest.mark.parametrize("impl", ["compiled-rows", "tensor-hash"])
def test_keyed_dropout_equals_seeded_dropout_per_row(numel, impl, monkeypatch):
    if impl == "tensor-hash":
        monkeypatch.setattr(keyed, "_compiled", lambda: None)
    else:
        pytest.importorskip("numba")  # the `fast` extra
    seeds = row_seeds(torch.tensor([5, -9]), torch.arange(3))
    x = torch.randn(6, numel, generator=torch.Generator().manual_seed(numel))
    for p in (0.1, 0.5, 0.93):
        want = torch.stack([seeded_dropout(x[r], p, int(s)) for r, s in enumerate(seeds)])
        assert torch.equal(keyed_dropout(x, seeds, p), want)  # same op per element
        ones = torch.ones(6, numel, dtype=torch.float64)
        mask = keyed_mask((6, numel), seeds, p, like=ones)
        ref = torch.stack(
            [_ops.dropout_(ones[r].clone(), int(s), p, precise=True) for r, s in enumerate(seeds)]
        )
        assert torch.equal(mask, ref)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_compiled_rows_match_per_row_kernel_for_dtypes_and_shapes(dtype):
    pytest.importorskip("numba")
    seeds = row_seeds(torch.tensor([3, 4]), torch.arange(4))
    x = torch.randn(8, 3, 5, generator=torch.Generator().manual_seed(1)).to(dtype)
    want = torch.stack([seeded_dropout(x[r], 0.3, int(s)) for r, s in enumerate(seeds)])
    got = keyed_dropout(x, seeds, 0.3)
    assert got.dtype == dtype and got.shape == x.shape and torch.equal(got, want)
    assert got.data_ptr() != x.data_ptr()  # a new tensor, x untouched


def test_compiled_rows_split_over_threads_give_the_same_bits():
    pytest.importorskip("numba")
    seeds = row_seeds(torch.tensor([11]), torch.arange(64))
    x = torch.randn(64, 5000, generator=torch.Generator().manual_seed(2))  # 2 workers at 2 threads
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = keyed_dropout(x, seeds, 0.2)
        torch.set_num_threads(2)
        two = keyed_dropout(x, seeds, 0.2)
    finally:
        torch.set_num_threads(threads)
    want = torch.stack([seeded_dropout(x[r], 0.2, int(s)) for r, s in enumerate(seeds)])
    assert torch.equal(one, want) and torch.equal(two, want)


def test_keyed_dropout_under_autograd_takes_the_mask_path():
    seeds = row_seeds(torch.tensor([7]), torch.arange(3))
    x = torch.randn(3, 50, generator=torch.Generator().manual_seed(3), requires_grad=True)
    y = keyed_dropout(x, seeds, 0.4)
    y.sum().backward()
    want = torch.stack([seeded_dropout(x[r].detach(), 0.4, int(s)) for r, s in enumerate(seeds)])
    assert torch.equal(y.detach(), want)
    # d(sum)/dx: the scale (rounded to float32 once) where kept, 0 where dropped
    keep = keyed.keyed_keep(seeds, 50, 0.4, precise=False)
    scale = torch.tensor(_hash.scale(_hash.threshold(0.4)), dtype=torch.float32)
    assert torch.equal(x.grad, keep.float() * scale)


# -- mc_predict: a row's samples do not depend on its batch ---------------------------


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(16, 16),
        nn.Tanh(),
        dnn.Dropout(0.3),
        nn.Linear(16, 3),
    ).double()


def eye_net() -> nn.Sequential:
    """Identity weights: every sample is x times its masks, computed without rounding."""
    net = nn.Sequential(
        nn.Linear(6, 6), nn.Dropout(0.4), nn.Linear(6, 6), nn.Dropout1d(0.4), nn.Linear(6, 6)
    ).double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.eye(6, dtype=torch.float64))
                m.bias.zero_()
    # Dropout1d needs (N, C, L): view the 6 features as 2 channels of 3
    net.insert(3, nn.Unflatten(1, (2, 3)))
    net.insert(5, nn.Flatten())
    return net


# float64 rows through matmuls of other batch sizes: 3 dot products of length <= 16
TOL = 3 * 16 * torch.finfo(torch.float64).eps


def x_data(n: int = 11) -> torch.Tensor:
    return torch.rand(n, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) + 0.5


def samples(net: nn.Module, x, **kw) -> torch.Tensor:
    kw.setdefault("output", "regression")
    return mc_predict(net, x, samples=6, seed=3, keep_samples=True, **kw).samples


def test_single_row_with_its_key_repeats_its_row_in_the_batch():
    x = x_data()
    full, one = samples(eye_net(), x), samples(eye_net(), x[4:5], row_ids=[4])
    assert torch.equal(one[:, 0], full[:, 4])  # masks identical
    assert 0 < int((full == 0).sum()) < full.numel()
    got, ref = (
        samples(mlp(), x[4:5], row_ids=[4], output="logits"),
        samples(mlp(), x, output="logits"),
    )
    torch.testing.assert_close(got[:, 0], ref[:, 4], rtol=TOL, atol=TOL)


@pytest.mark.parametrize(
    "kw",
    [
        {"batch_size": 2},
        {"batch_size": 7, "strategy": "batched"},
        {"strategy": "batched", "chunk_samples": 4},
        {"strategy": "loop", "reuse_prefix": False},
        {"tol": 1e-9, "min_samples": 2, "max_samples": 6},
    ],
)
def test_masks_do_not_depend_on_batching_strategy_or_chunking(kw):
    x = x_data()
    base, got = samples(eye_net(), x), samples(eye_net(), x, **kw)
    # adaptive sampling leaves NaN after a row stops; its samples before are the same
    ran = ~got.isnan()
    assert torch.equal(got[ran], base[ran]) and ran[:2].all()
    got = samples(mlp(), x, output="logits", **kw)
    ran = ~got.isnan()
    ref = samples(mlp(), x, output="logits")
    torch.testing.assert_close(got[ran], ref[ran], rtol=TOL, atol=TOL)


def test_batch_size_2_equals_7_and_a_loader_counts_rows_across_batches():
    x = x_data()
    two = samples(mlp(), x, batch_size=2, output="logits")
    seven = samples(mlp(), x, batch_size=7, output="logits")
    torch.testing.assert_close(two, seven, rtol=TOL, atol=TOL)
    loader = DataLoader(TensorDataset(x), batch_size=3)
    assert torch.equal(samples(eye_net(), loader), samples(eye_net(), x))


def test_permuted_rows_with_their_keys_give_permuted_samples():
    x, perm = x_data(), torch.randperm(11, generator=torch.Generator().manual_seed(0))
    keys = torch.arange(100, 111)  # any unique integers
    base = samples(eye_net(), x, row_ids=keys)
    assert torch.equal(samples(eye_net(), x[perm], row_ids=keys[perm]), base[:, perm])
    assert not torch.equal(base, samples(eye_net(), x))  # the keys matter


def test_thread_count_does_not_change_masks():
    x, threads = torch.rand(64, 6, dtype=torch.float64) + 0.5, torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = samples(eye_net(), x)
        torch.set_num_threads(2)
        two = samples(eye_net(), x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_consistent_masks_share_one_mask_across_rows_and_batches():
    x = torch.ones(6, 6, dtype=torch.float64)
    got = samples(eye_net(), x, consistent_masks=True, batch_size=4)
    assert (got == got[:, :1]).all()  # every row of a sample has the same mask
    assert not torch.equal(got[0], got[1])


def test_generator_modules_are_row_keyed():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), dnn.GaussianDropout(0.3), nn.Linear(12, 2)).double()
    x = x_data()
    got = mc_predict(net, x, samples=4, seed=1, keep_samples=True, output="regression")
    one = mc_predict(
        net, x[7:8], samples=4, seed=1, keep_samples=True, output="regression", row_ids=[7]
    )
    torch.testing.assert_close(one.samples[:, 0], got.samples[:, 7], rtol=TOL, atol=TOL)
    assert got.extras["row_keyed_sites"] == ["1"]


def test_minilm_routed_attention_is_row_keyed(minilm_dir):
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    texts = ["a good movie", "bad and long", "fine", "odd, dull and great"]
    enc = dict(tok(texts, return_tensors="pt", padding=True))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        minilm_dir, num_labels=2, attn_implementation="sdpa"
    )
    fast_dropout(model, attention=True)
    full = mc_predict(model, enc, samples=3, seed=4, keep_samples=True)
    ex = full.extras
    assert ex["global_rng_sites"] == [] and sorted(ex["row_keyed_sites"]) == sorted(ex["sites"])
    assert any(p.endswith("attention.self.dropout") for p in ex["row_keyed_sites"])
    one = mc_predict(
        model,
        {k: v[2:3] for k, v in enc.items()},
        samples=3,
        seed=4,
        keep_samples=True,
        row_ids=[2],
    )
    pairs = mc_predict(model, enc, samples=3, seed=4, keep_samples=True, batch_size=2)
    # float32 probabilities through 6 layers of width 384: products of other batch
    # shapes round differently (~1e-7 each); 1e-5 is far below any mask change
    torch.testing.assert_close(one.samples[:, 0], full.samples[:, 2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pairs.samples, full.samples, rtol=1e-5, atol=1e-5)
    assert not torch.equal(full.samples[0], full.samples[1])


# -- row_ids validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("row_ids", "exc", "match"),
    [
        (
            torch.arange(5.0),
            TypeError,
            r"mc_predict: expected row_ids of an integer dtype, but got 'torch.float32'\. Pass",
        ),
        (
            torch.ones(5, dtype=torch.bool),
            TypeError,
            r"expected row_ids of an integer dtype, but got 'torch.bool'",
        ),
        (
            ["a", "b", "c", "d", "e"],
            TypeError,
            r"mc_predict: expected row_ids to be integer keys, but got 'list'\. Pass one",
        ),
        (
            torch.arange(6).reshape(2, 3),
            ValueError,
            r"mc_predict: expected row_ids of shape \(N,\), but got \(2, 3\)\.",
        ),
        (
            [0, 1, 2],
            ValueError,
            r"mc_predict: expected 5 row_ids \(one per input\), but got 3\. Pass one integer",
        ),
        (
            [0, 1, 2, 1, 0],
            ValueError,
            r"mc_predict: expected unique row_ids \(equal keys would give two rows the same "
            r"masks\), but got 'repeated keys \[0, 1\]'\. Give every input row its own key\.",
        ),
    ],
)
def test_bad_row_ids_raise_house_errors_and_leave_the_model(row_ids, exc, match):
    net = mlp().train()
    with pytest.raises(exc, match=match):
        mc_predict(net, x_data(5), samples=2, row_ids=row_ids)
    assert all(m.training for m in net.modules())


def test_row_ids_must_cover_a_loader_exactly():
    x = x_data(6)
    loader = DataLoader(TensorDataset(x), batch_size=4)
    with pytest.raises(
        ValueError, match=r"mc_predict: expected at least 6 row_ids .*, but got 5\."
    ):
        mc_predict(mlp(), loader, samples=2, row_ids=list(range(5)))
    with pytest.raises(
        ValueError, match=r"mc_predict: expected 6 row_ids \(one per input\), but got 7\."
    ):
        mc_predict(mlp(), loader, samples=2, row_ids=list(range(7)))
    got = mc_predict(mlp(), loader, samples=2, row_ids=list(range(6)), seed=0)
    assert got.mean.shape == (6, 3)

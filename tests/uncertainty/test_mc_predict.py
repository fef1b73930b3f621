"""mc_predict on plain PyTorch models: every fast path has the naive loop's masks, exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dropkit.kernels import draw_seed, seeded_dropout
from dropkit.uncertainty import MCResult, mc_predict, sample_generator
from dropkit.uncertainty._engine import BATCH_MARGIN
from dropkit.uncertainty.keyed import row_seed

FIELDS = (
    "mean",
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "variation_ratio",
    "std",
)


def mlp(p: float = 0.3, out: int = 3) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Linear(6, 16), nn.ReLU()),
        nn.Dropout(p),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(16, out),
    ).double()


def eye_mlp(p: float = 0.3) -> nn.Sequential:
    """``mlp``'s layout with identity weights and zero biases.

    Every matrix product is then exact on any BLAS (one product ``x * 1`` plus
    zeros), so the samples are ``x`` times the masks and their scales, and equal
    samples mean equal masks.
    """
    net = nn.Sequential(
        nn.Sequential(nn.Linear(6, 6), nn.ReLU()),
        nn.Dropout(p),
        nn.Linear(6, 6),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(6, 6),
    ).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.eye(6, dtype=torch.float64))
                m.bias.zero_()
    return net


def naive(
    net: nn.Sequential, x: torch.Tensor, seed: int, samples: int, softmax: bool = True
) -> torch.Tensor:
    """Hand-written loop: at sample s, each site draws a seed from the generator of
    (seed, s) and row r gets the kernel's mask of ``row_seed(site seed, r)``."""
    outs = []
    with torch.no_grad():
        for s in range(samples):
            gen = sample_generator(seed, s)
            h = x
            for layer in net:
                if isinstance(layer, nn.Dropout):
                    sigma = int(draw_seed(gen))
                    rows = [
                        seeded_dropout(h[r], layer.p, row_seed(sigma, r)) for r in range(len(h))
                    ]
                    h = torch.stack(rows)
                else:
                    h = layer(h)
            outs.append(torch.softmax(h, -1) if softmax else h)
    return torch.stack(outs)  # (S, N, C)


def assert_same(a: MCResult, b: MCResult) -> None:
    # float64 summaries of samples that may differ by ~1e-14 (BLAS summation order
    # on other batch shapes): 1e-12 is 100x that and far below any mask change
    for name in FIELDS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-12)
    assert torch.equal(a.samples_used, b.samples_used)


@pytest.mark.parametrize(
    "kw",
    [
        {"strategy": "loop", "reuse_prefix": False},
        {"strategy": "loop"},
        {"strategy": "batched"},
        {"strategy": "batched", "chunk_samples": 3},
        {"strategy": "auto"},
        {"strategy": "batched", "reuse_prefix": False, "memory_mb": 0.001},
    ],
)
def test_every_path_equals_the_naive_loop(seed, kw):
    net = mlp()
    x = torch.randn(5, 6, dtype=torch.float64)
    ref = MCResult.from_samples(naive(net, x, seed, 8))
    got = mc_predict(net, x, samples=8, seed=seed, keep_samples=True, **kw)
    assert_same(got, ref)
    # batched, chunked and prefix-reusing paths run matmuls of other shapes than the
    # loop, which BLAS may sum in another order (1-ulp differences on AVX-512 CPUs):
    # each of the 3 dot products of length K <= 16 may differ by K * eps relatively
    tol = 3 * 16 * torch.finfo(torch.float64).eps
    torch.testing.assert_close(got.samples, naive(net, x, seed, 8), rtol=tol, atol=tol)
    # the masks themselves are identical on every path: with identity weights the
    # samples are x times the masks, computed without any rounding
    eye, x_pos = eye_mlp(), x.abs() + 0.5  # positive inputs pass the ReLUs unchanged
    masks = mc_predict(
        eye, x_pos, samples=8, seed=seed, output="regression", keep_samples=True, **kw
    )
    want = naive(eye, x_pos, seed, 8, softmax=False)
    assert torch.equal(masks.samples, want)
    assert 0 < int((want == 0).sum()) < want.numel()  # some dropped, some kept
    want_prefix = "none" if kw.get("reuse_prefix") is False else "sequential"
    assert got.extras["prefix"] == want_prefix
    assert got.extras["strategy"] in ("loop", "batched")
    if kw["strategy"] != "auto":
        assert got.extras["strategy"] == kw["strategy"]


def test_auto_records_measured_choice(seed):
    got = mc_predict(mlp(), torch.randn(4, 6, dtype=torch.float64), samples=12, seed=seed)
    timing = got.extras["timing"]
    assert set(timing) == {"loop_s_per_sample", "batched_s_per_sample", "batched_chunk"}
    clearly = timing["batched_s_per_sample"] < BATCH_MARGIN * timing["loop_s_per_sample"]
    faster = "batched" if clearly else "loop"
    assert got.extras["strategy"] == faster and got.extras["strategy_reason"] == "measured"


def test_batchnorm_statistics_and_modes_unchanged(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(6, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(8, 8),
        nn.BatchNorm1d(8),
        nn.Dropout(0.5),
        nn.Linear(8, 3),
    )
    net(torch.randn(16, 6))  # non-trivial running statistics
    for train in (True, False):
        net.train(train)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        flags = [m.training for m in net.modules()]
        mc_predict(net, torch.randn(7, 6), samples=6, seed=seed, strategy="batched")
        after = net.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert [m.training for m in net.modules()] == flags
        assert not any("forward" in m.__dict__ for m in net.modules())


def test_adaptive_equals_full_run_truncated_per_input(seed):
    net = mlp(p=0.5)
    x = torch.randn(12, 6, dtype=torch.float64) * torch.linspace(0.05, 6, 12).double()[:, None]
    full = mc_predict(net, x, samples=30, seed=seed, keep_samples=True)
    for strategy in ("loop", "batched"):
        ada = mc_predict(
            net,
            x,
            samples=30,
            tol=0.02,
            min_samples=4,
            seed=seed,
            strategy=strategy,
            keep_samples=True,
        )
        used = ada.samples_used
        assert int(used.min()) >= 4 and int(used.max()) <= 30
        assert int(used.min()) < int(used.max())  # some inputs stop early, some go on
        for i, k in enumerate(used.tolist()):
            ref = MCResult.from_samples(full.samples[:k, i : i + 1])
            for name in FIELDS:
                torch.testing.assert_close(getattr(ada, name)[i : i + 1], getattr(ref, name))
            # same masks; only BLAS blocking on fewer rows may differ in the last bit
            torch.testing.assert_close(
                ada.samples[:k, i], full.samples[:k, i], rtol=1e-12, atol=1e-12
            )
        # every stopped input met the tolerance
        stopped = used < 30
        pred = ada.mean.argmax(-1)
        picked = full.samples[:, torch.arange(12), pred]  # (S, N)
        for i in torch.nonzero(stopped).flatten().tolist():
            k = int(used[i])
            assert float(picked[:k, i].std() / k**0.5) < 0.02


def test_consistent_masks_do_not_depend_on_batching(seed):
    net = mlp()
    x = torch.randn(7, 6, dtype=torch.float64)
    whole = mc_predict(net, x, samples=6, seed=seed, consistent_masks=True, keep_samples=True)
    split = mc_predict(
        net,
        x,
        samples=6,
        seed=seed,
        consistent_masks=True,
        batch_size=3,
        strategy="batched",
        keep_samples=True,
    )
    perm = torch.randperm(7)
    shuffled = mc_predict(
        net,
        x[perm],
        samples=6,
        seed=seed,
        consistent_masks=True,
        strategy="loop",
        keep_samples=True,
    )
    # same masks; different batch sizes may change BLAS rounding in the last bit only
    tight = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(split.samples, whole.samples, **tight)
    torch.testing.assert_close(shuffled.samples, whole.samples[:, perm], **tight)
    # the masks themselves match exactly: with identity weights no step rounds
    eye, x_pos = eye_mlp(), x.abs() + 0.5
    kw = {"samples": 6, "seed": seed, "output": "regression", "keep_samples": True}
    eye_whole = mc_predict(eye, x_pos, consistent_masks=True, **kw)
    eye_split = mc_predict(
        eye, x_pos, consistent_masks=True, batch_size=3, strategy="batched", **kw
    )
    eye_shuffled = mc_predict(eye, x_pos[perm], consistent_masks=True, strategy="loop", **kw)
    assert torch.equal(eye_split.samples, eye_whole.samples)
    assert torch.equal(eye_shuffled.samples, eye_whole.samples[:, perm])
    # one mask per sample for all inputs: identical inputs give identical samples
    rows = x_pos[:1].repeat(4, 1)
    same = mc_predict(eye, rows, consistent_masks=True, **kw)
    assert torch.equal(same.samples[:, 0], same.samples[:, 3])
    free = mc_predict(eye, rows, **kw)
    assert not torch.equal(free.samples[:, 0] == 0, free.samples[:, 3] == 0)


def test_batches_draw_fresh_masks_without_consistency(seed):
    net = mlp()
    x = torch.randn(1, 6, dtype=torch.float64).repeat(2, 1)
    got = mc_predict(net, x, samples=5, seed=seed, batch_size=1, keep_samples=True)
    assert not torch.equal(got.samples[:, 0], got.samples[:, 1])


def test_loader_tuple_batches_equal_tensor_batches(seed):
    net = mlp()
    x = torch.randn(10, 6, dtype=torch.float64)
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=4)
    a = mc_predict(net, loader, samples=5, seed=seed, progress=False)
    b = mc_predict(net, x, samples=5, seed=seed, batch_size=4)
    c = mc_predict(net, [x[:4], x[4:8], x[8:]], samples=5, seed=seed)
    assert_same(a, b)
    assert_same(c, b)
    assert a.mean.shape == (10, 3)


def test_global_seed_reproduces_unseeded_calls():
    net, x = mlp(), torch.randn(3, 6, dtype=torch.float64)
    torch.manual_seed(7)
    a = mc_predict(net, x, samples=4)
    torch.manual_seed(7)
    b = mc_predict(net, x, samples=4)
    assert_same(a, b)


class Probs(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.softmax(self.net(x), -1), x


def test_probs_output_and_tuple_outputs(seed):
    net = mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    a = mc_predict(Probs(net), x, samples=5, seed=seed, output="probs")
    b = mc_predict(net, x, samples=5, seed=seed, output="logits")
    assert_same(a, b)
    assert a.extras["prefix"] == "none"


class Kw(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.drop = nn.Dropout(0.4)
        self.out = nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = (self.emb(input_ids) * attention_mask[..., None]).sum(1)
        return self.out(self.drop(h))


def test_mapping_inputs_and_explicit_split(seed):
    model = Kw().double()
    enc = {"input_ids": torch.randint(0, 10, (5, 3)), "attention_mask": torch.ones(5, 3)}
    full = mc_predict(model, enc, samples=6, seed=seed, strategy="loop")

    def feats(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return (model.emb(input_ids) * attention_mask[..., None]).sum(1)

    head = nn.Sequential(model.drop, model.out)
    split = mc_predict(
        model, enc, samples=6, seed=seed, features=feats, head=head, strategy="batched"
    )
    assert_same(split, full)
    assert split.extras["prefix"] == "explicit"


class Hetero(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.2))
        self.mu = nn.Linear(16, 1)
        self.log_var = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.log_var(h)


def test_regression_tau_and_heteroscedastic_match_naive(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1)).double()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    got = mc_predict(
        net, x, samples=9, seed=seed, output="regression", tau=3.0, target=y, keep_samples=True
    )
    ref = MCResult.from_samples(got.samples, task="regression", tau=3.0, target=y)
    for name in ("mean", "epistemic_var", "aleatoric_var", "log_likelihood"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name))
    assert got.mean.shape == (6, 1) and got.log_likelihood.shape == (6,)

    model = Hetero().double()
    het = mc_predict(
        model,
        x,
        samples=7,
        seed=seed,
        output="regression",
        heteroscedastic=True,
        target=y,
        keep_samples=True,
        strategy="batched",
    )
    means, variances = [], []
    with torch.no_grad():
        for s in range(7):
            gen = sample_generator(seed, s)
            h, sigma = model.body[1](model.body[0](x)), int(draw_seed(gen))
            h = torch.stack([seeded_dropout(h[r], 0.2, row_seed(sigma, r)) for r in range(len(h))])
            means.append(model.mu(h))
            variances.append(model.log_var(h).exp())
    ref = MCResult.from_samples(
        torch.stack(means), task="regression", noise_var=torch.stack(variances), target=y
    )
    for name in ("mean", "epistemic_var", "aleatoric_var", "log_likelihood"):
        torch.testing.assert_close(getattr(het, name), getattr(ref, name))


def test_progress_bar_runs(seed, capsys):
    pytest.importorskip("tqdm")
    got = mc_predict(
        mlp(), torch.randn(3, 6, dtype=torch.float64), samples=2, seed=seed, progress=True
    )
    assert got.mean.shape == (3, 3)
    assert "mc_predict" in capsys.readouterr().err

"""mc_predict on Hugging Face models: backbone run once for head-only MC, as the full loop."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from dropkit.uncertainty import MCResult, mc_predict

transformers = pytest.importorskip("transformers")

FIELDS = (
    "mean",
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "variation_ratio",
    "std",
)
SMALL = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    vocab_size=64,
    max_position_embeddings=32,
)


def build(name: str, task: str = "seq") -> torch.nn.Module:
    T = transformers
    torch.manual_seed(0)
    if name == "bert":
        cfg = T.BertConfig(**SMALL, classifier_dropout=0.3)
    elif name == "roberta":
        cfg = T.RobertaConfig(**SMALL, pad_token_id=1)
    elif name == "distilbert":
        cfg = T.DistilBertConfig(
            vocab_size=64,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=48,
            max_position_embeddings=32,
            seq_classif_dropout=0.3,
        )
    else:
        cfg = T.ElectraConfig(**SMALL, embedding_size=16)
    cfg.num_labels = 3
    cls = (
        T.AutoModelForSequenceClassification if task == "seq" else T.AutoModelForTokenClassification
    )
    return cls.from_config(cfg).double().eval()


def batch(n: int = 5, length: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 64, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, -2:] = 0  # one padded row
    ids[0, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@contextlib.contextmanager
def recorded_masks(module: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect ``output == 0`` of every call of ``module`` (its dropout mask)."""
    seen: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda m, i, out: seen.append(out == 0))
    try:
        yield seen
    finally:
        hook.remove()


def same(a: MCResult, b: MCResult) -> None:
    # float64 models, reductions of at most 48 terms: the batched head and the loop
    # differ by BLAS summation order only (~48 * eps ~ 1e-14), far inside 1e-10
    for name in FIELDS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("bert", "seq"),
        ("roberta", "seq"),
        ("distilbert", "seq"),
        ("electra", "seq"),
        ("bert", "tok"),
    ],
)
def test_head_only_runs_backbone_once_and_equals_full_loop(name, task, seed):
    model = build(name, task)
    enc = batch()
    backbone_runs = []
    emb = model.base_model.embeddings
    hook = emb.register_forward_hook(lambda *a: backbone_runs.append(1))
    head_drop = model.get_submodule(
        "classifier.dropout" if name in ("roberta", "electra") else "dropout"
    )
    try:
        with recorded_masks(head_drop) as fast_masks:
            fast = mc_predict(
                model,
                enc,
                samples=6,
                sites="head",
                seed=seed,
                strategy="batched",
                keep_samples=True,
            )
        assert len(backbone_runs) == 1
        with recorded_masks(head_drop) as full_masks:
            full = mc_predict(
                model,
                enc,
                samples=6,
                sites="head",
                seed=seed,
                strategy="loop",
                reuse_prefix=False,
                keep_samples=True,
            )
        assert len(backbone_runs) == 7
    finally:
        hook.remove()
    # the head's masks are identical sample by sample, in batched and looped runs
    # (RoBERTa's and ELECTRA's heads call their dropout twice per forward)
    uses = 2 if name in ("roberta", "electra") else 1
    for use in range(uses):
        a, b = (torch.cat(m[use::uses]).reshape(6, 5, -1) for m in (fast_masks, full_masks))
        assert bool(a.any()) and torch.equal(a, b)
    assert fast.extras["prefix"] == "backbone" and full.extras["prefix"] == "none"
    assert fast.extras["global_rng_sites"] == []
    same(fast, full)
    torch.testing.assert_close(fast.samples, full.samples, rtol=1e-10, atol=1e-12)
    assert not torch.equal(fast.samples[0], fast.samples[1])  # the head really drops
    want = (5, 7, 3) if task == "tok" else (5, 3)
    assert fast.mean.shape == want
    assert not any(m.training for m in model.modules())
    assert "forward" not in model.base_model.__dict__


def test_all_sites_include_attention_and_restore_modes(seed):
    model = build("bert")
    model.train()
    enc = batch()
    got = mc_predict(model, enc, samples=3, seed=seed)
    assert got.extras["prefix"] == "none"
    assert any("attention" in p for p in got.extras["global_rng_sites"])
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match=r"mc_predict: expected every active site to take seeded"):
        mc_predict(model, enc, samples=3, seed=seed, consistent_masks=True)
    assert all(m.training for m in model.modules())


def test_minilm_real_weights_head_only(minilm_dir, seed):
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        minilm_dir, num_labels=2
    ).eval()
    enc = tok(["a short text", "another one here"], return_tensors="pt", padding=True)
    with recorded_masks(model.dropout) as fast_masks:
        fast = mc_predict(
            model, enc, samples=4, sites="head", seed=seed, strategy="batched", keep_samples=True
        )
    with recorded_masks(model.dropout) as slow_masks:
        slow = mc_predict(
            model,
            enc,
            samples=4,
            sites="head",
            seed=seed,
            reuse_prefix=False,
            strategy="loop",
            keep_samples=True,
        )
    # the masks of the head's dropout are identical, sample by sample: (S, N, 384)
    a, b = (torch.cat(m).reshape(4, 2, 384) for m in (fast_masks, slow_masks))
    assert bool(a.any()) and torch.equal(a, b)
    # the backbone sees the same batch in both runs (bit-identical features); the head
    # runs batched vs looped in float32, and a dot product of K = 384 terms may round
    # differently by up to K * eps (Higham's gamma_K) when summed in another order
    tol = 384 * torch.finfo(torch.float32).eps
    torch.testing.assert_close(fast.samples, slow.samples, rtol=tol, atol=tol)
    assert fast.extras["prefix"] == "backbone" and fast.extras["sites"] == ["dropout"]

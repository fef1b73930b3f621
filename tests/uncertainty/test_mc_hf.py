"""mc_predict on Hugging Face models: backbone run once for head-only MC, exactly."""

from __future__ import annotations

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


def same(a: MCResult, b: MCResult) -> None:
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
    try:
        fast = mc_predict(
            model, enc, samples=6, sites="head", seed=seed, strategy="batched", keep_samples=True
        )
        assert len(backbone_runs) == 1
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
    fast = mc_predict(model, enc, samples=4, sites="head", seed=seed, keep_samples=True)
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
    torch.testing.assert_close(fast.samples, slow.samples, rtol=1e-5, atol=1e-6)
    assert fast.extras["prefix"] == "backbone" and fast.extras["sites"] == ["dropout"]

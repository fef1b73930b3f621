"""sites="last:k" / "blocks:i-j" and prefix reuse at any depth, on tiny HF and timm models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from dropkit import find_dropout, mc_predict, set_dropout
from dropkit.sites import mc_mode

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

L = 3  # blocks in every tiny model
TEXT = dict(hidden_size=32, num_hidden_layers=L, num_attention_heads=2, intermediate_size=64)


def _text() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, 64, (4, 12), generator=g)
    # padding on two rows, so the attention mask matters in the re-run blocks
    mask = torch.ones(4, 12, dtype=torch.int64)
    mask[2, 8:] = 0
    mask[3, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _positions() -> dict[str, torch.Tensor]:
    # explicit position_ids (offset by 2), which rotary / learned positions must see
    return {**_text(), "position_ids": torch.arange(2, 14).expand(4, 12)}


def _image() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


class FirstToken(nn.Module):
    """T5 encoder -> logits: a linear read-out of the first token."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.out = nn.Linear(32, 5)

    def forward(self, **kw: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(**kw).last_hidden_state[:, 0])


class Seq2SeqLogits(nn.Module):
    """T5 encoder-decoder -> logits of the last decoder position."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **kw: torch.Tensor) -> torch.Tensor:
        return self.model(**kw).logits[:, -1]


def build(name: str) -> tuple[nn.Module, Any, str]:
    """(model, inputs, dotted path of the blocks)."""
    T = transformers
    if name == "bert":
        cfg = T.BertConfig(vocab_size=64, max_position_embeddings=32, **TEXT)
        return T.BertForSequenceClassification(cfg), _text(), "bert.encoder.layer"
    if name == "roberta":
        cfg = T.RobertaConfig(vocab_size=64, max_position_embeddings=40, **TEXT)
        return T.RobertaForSequenceClassification(cfg), _text(), "roberta.encoder.layer"
    if name == "distilbert":
        cfg = T.DistilBertConfig(
            vocab_size=64, dim=32, n_layers=L, n_heads=2, hidden_dim=64, max_position_embeddings=32
        )
        return (
            T.DistilBertForSequenceClassification(cfg),
            _text(),
            "distilbert.transformer.layer",
        )
    if name == "gpt2":
        cfg = T.GPT2Config(
            vocab_size=64,
            n_embd=32,
            n_layer=L,
            n_head=2,
            n_positions=32,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
        return T.GPT2ForSequenceClassification(cfg), _positions(), "transformer.h"
    if name == "llama":
        cfg = T.LlamaConfig(
            vocab_size=64,
            num_key_value_heads=1,
            max_position_embeddings=32,
            attention_dropout=0.3,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            **TEXT,
        )
        cfg._attn_implementation = "eager"
        return T.LlamaForSequenceClassification(cfg), _positions(), "model.layers"
    if name == "t5":
        cfg = T.T5Config(
            vocab_size=64, d_model=32, d_kv=16, d_ff=64, num_layers=L, num_heads=2, dropout_rate=0.2
        )
        return FirstToken(T.T5EncoderModel(cfg)), _text(), "encoder.encoder.block"
    if name == "vit":
        net = timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=32,
            patch_size=8,
            depth=L,
            drop_rate=0.1,
            proj_drop_rate=0.1,
            attn_drop_rate=0.1,
            drop_path_rate=0.2,
            num_classes=5,
        )
        return net, _image(), "blocks"
    if name == "resnet":
        net = timm.create_model(
            "resnet18", pretrained=False, drop_rate=0.2, drop_path_rate=0.3, num_classes=5
        )
        return net, _image(), ""
    raise KeyError(name)


FAMILIES = ["bert", "roberta", "distilbert", "gpt2", "llama", "t5", "vit", "resnet"]
T5_STACK_DROPOUT = "encoder.encoder.dropout"


def _in_block(path: str, blocks: str, names: list[str]) -> int | None:
    head = f"{blocks}." if blocks else ""
    for i, n in enumerate(names):
        if path.startswith(f"{head}{n}."):
            return i
    return None


def _expected(model: nn.Module, blocks: str, lo: int, hi: int) -> list[str]:
    """Reference selection from paths: blocks lo..hi, plus sites after the last block."""
    parent = model.get_submodule(blocks) if blocks else model
    names = [n for n, _ in parent.named_children()]
    if not blocks:  # timm ResNet: the stages are the blocks
        names = [n for n in names if n.startswith("layer")]
    sites = find_dropout(model, config=False)
    first_after = max(
        i for i, s in enumerate(sites) if _in_block(s.path, blocks, names) is not None
    )
    out = []
    for i, site in enumerate(sites):
        b = _in_block(site.path, blocks, names)
        if b is not None and lo <= b <= hi:
            out.append(site.name)
        elif b is None and (i > first_after or (site.path == "" and site.attr == "drop_rate")):
            out.append(site.name)
    return sorted(out)


def _selected(model: nn.Module, spec: Any) -> list[str]:
    with mc_mode(model, sites=spec) as handle:
        return sorted(s.name for s in handle.enabled)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("k", [1, 2, L])
def test_last_k_selects_the_last_blocks_and_the_head(name: str, k: int) -> None:
    model, _, blocks = build(name)
    want = _expected(model, blocks, L - k if name != "resnet" else 4 - k, 99)
    assert want, "the reference must select something"
    assert _selected(model, f"last:{k}") == want


@pytest.mark.parametrize("name", ["bert", "gpt2", "vit"])
def test_blocks_range_selects_that_range_and_the_head(name: str) -> None:
    model, _, blocks = build(name)
    assert _selected(model, "blocks:0-1") == _expected(model, blocks, 0, 1)
    assert _selected(model, "blocks:1-1") == _expected(model, blocks, 1, 1)


def test_last_k_combines_with_other_specs() -> None:
    model, _, _ = build("bert")
    both = _selected(model, ["last:1", "bert.embeddings.*"])
    assert both == sorted(_selected(model, "last:1") + ["bert.embeddings.dropout"])


def test_no_blocks_error_names_what_was_looked_for() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    with pytest.raises(ValueError, match=r"repeated blocks .*sites='last:1'.*features= and head="):
        mc_predict(net, torch.randn(3, 4), sites="last:1", samples=2)
    assert [m.training for m in net.modules()] == flags
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("last:x", r"expected sites='last:k' or 'blocks:i-j'.*'last:x'"),
        ("blocks:2-1", r"expected sites='last:k' or 'blocks:i-j'|0 <= i <= j < 3"),
        ("blocks:0-3", r"expected 0 <= i <= j < 3 .*'blocks:0-3'"),
        ("last:4", r"expected k <= 3 .*'last:4'. Pass sites='last:3'"),
    ],
)
def test_bad_depth_specs(spec: str, match: str) -> None:
    model, _, _ = build("bert")
    flags = [m.training for m in model.modules()]
    with pytest.raises(ValueError, match=match):
        mc_mode(model, sites=spec)
    assert [m.training for m in model.modules()] == flags


def _run(model: nn.Module, x: Any, spec: Any, **kw: Any) -> Any:
    return mc_predict(model, x, samples=6, sites=spec, seed=11, keep_samples=True, **kw)


# Probabilities lie in [0, 1]. With strategy="loop" both runs apply the same ops to the
# same shapes (the prefix run once computes exactly what the full run computes), so the
# only freedom is float32 summation order across threads: a few eps32 per layer.
LOOP_ATOL = 64 * torch.finfo(torch.float32).eps
# Batched calls multiply matrices of other shapes (K*N rows), which may round each of
# the ~10 layers' sums (width <= 768, here 32-512) differently: sqrt(width) eps32 each.
BATCH_ATOL = 10 * 32 * torch.finfo(torch.float32).eps


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("k", [1, 2])
def test_prefix_reuse_equals_the_full_model(name: str, k: int) -> None:
    model, x, _ = build(name)
    spec = f"last:{k}"
    if name == "t5":  # see test_t5_shared_dropout_falls_back_to_the_full_model
        model.get_submodule(T5_STACK_DROPOUT).p = 0.0
    names = _selected(model, spec)
    fast = _run(model, x, spec, strategy="loop")
    # reference: the whole model, the same sites named one by one, no prefix reuse
    full = _run(model, x, names, strategy="loop", reuse_prefix=False)
    assert fast.extras["prefix"] == "blocks"
    assert full.extras["prefix"] == "none"
    assert fast.extras["prefix_calls"] == 1
    torch.testing.assert_close(fast.samples, full.samples, rtol=0, atol=LOOP_ATOL)
    # the samples differ from each other: the selected sites really drop
    assert (full.samples[0] - full.samples[1]).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["bert", "vit", "resnet"])
def test_batched_prefix_reuse_equals_the_full_model(name: str) -> None:
    model, x, _ = build(name)
    fast = _run(model, x, "last:2", strategy="batched", chunk_samples=3)
    assert fast.extras["strategy"] == "batched" and fast.extras["chunk"] == 3
    assert fast.extras["prefix"] == "blocks"
    # same chunks without reuse: sites on torch's global generator (timm's fused
    # attention dropout, ResNet's head drop_rate) draw one forked state per call
    same = _run(model, x, "last:2", strategy="batched", chunk_samples=3, reuse_prefix=False)
    torch.testing.assert_close(fast.samples, same.samples, rtol=0, atol=LOOP_ATOL)
    if not fast.extras["global_rng_sites"]:  # row-keyed masks: batching changes no mask
        full = _run(model, x, "last:2", strategy="loop", reuse_prefix=False)
        torch.testing.assert_close(fast.samples, full.samples, rtol=0, atol=BATCH_ATOL)


def test_t5_shared_dropout_falls_back_to_the_full_model() -> None:
    # T5's stack applies one ``dropout`` module after the embeddings and after the
    # last block; last:k selects it, so caching block outputs would freeze its mask.
    model, x, _ = build("t5")
    fast = _run(model, x, "last:1", strategy="loop")
    full = _run(model, x, "last:1", strategy="loop", reuse_prefix=False)
    assert fast.extras["prefix"] == "none"
    assert T5_STACK_DROPOUT in fast.extras["prefix_detail"]
    torch.testing.assert_close(fast.samples, full.samples, rtol=0, atol=LOOP_ATOL)


def test_prefix_blocks_run_once_and_are_restored() -> None:
    model, x, blocks = build("bert")
    calls = [0] * L
    layers = model.get_submodule(blocks)

    def counter(i: int) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            calls[i] += 1

        return hook

    # hooks on a child: a cached block's own hooks still fire, its children do not run
    handles = [layers[i].attention.register_forward_pre_hook(counter(i)) for i in range(L)]
    try:
        _run(model, x, "last:1", strategy="loop")
    finally:
        for h in handles:
            h.remove()
    # blocks 0 and 1 run in the one prefix forward only; block 2 runs once per sample
    # (the prefix forward stops when block 1 returns)
    assert calls == [1, 1, 6]
    assert all("forward" not in layers[i].__dict__ for i in range(L))


def test_batched_row_keyed_sites_equal_the_looped_full_model() -> None:
    # without attention dropout (torch's global generator), every mask is row-keyed:
    # batching and prefix reuse together change no mask, only the matmul shapes
    model, x, _ = build("bert")
    set_dropout(model, {"attention": 0.0})
    names = _selected(model, "last:2")
    fast = _run(model, x, "last:2", strategy="batched", chunk_samples=3)
    assert fast.extras["prefix"] == "blocks" and not fast.extras["global_rng_sites"]
    full = _run(model, x, names, strategy="loop", reuse_prefix=False)
    torch.testing.assert_close(fast.samples, full.samples, rtol=0, atol=BATCH_ATOL)


def test_block_cut_only_with_a_depth_selector() -> None:
    # the cut assumes each block reads only its predecessor's output: opt-in
    model, x, _ = build("vit")
    names = _selected(model, "last:1")
    assert _run(model, x, names, strategy="loop").extras["prefix"] == "none"
    assert _run(model, x, ["last:1"], strategy="loop").extras["prefix"] == "blocks"


def test_convnext_largest_group_is_the_deepest_stage() -> None:
    # convnext_atto has stages of (2, 2, 6, 2) blocks: the 6 blocks of stage 2 are
    # the largest same-class group; last:2 takes its last 2 and all that follows
    net = timm.create_model(
        "convnext_atto", pretrained=False, drop_rate=0.2, drop_path_rate=0.3, num_classes=5
    )
    want = [f"stages.2.blocks.{i}.drop_path" for i in (4, 5)]
    want += [f"stages.3.blocks.{i}.drop_path" for i in (0, 1)] + ["head.drop"]
    assert _selected(net, "last:2") == sorted(want)
    x = _image()
    fast = _run(net, x, "last:2", strategy="loop")
    full = _run(net, x, want, strategy="loop", reuse_prefix=False)
    assert fast.extras["prefix_detail"] == "blocks 0-3 of 6 under 'stages.2.blocks' run once"
    torch.testing.assert_close(fast.samples, full.samples, rtol=0, atol=LOOP_ATOL)
    assert (full.samples[0] - full.samples[1]).abs().max() > 1e-4


def test_t5_encoder_decoder_cuts_in_the_encoder() -> None:
    # encoder and decoder block groups tie in size: the first (encoder) is taken, so
    # last:1 is its last block plus the whole decoder; the decoder reads the encoder
    # output (cross-attention) built from the cached blocks
    cfg = transformers.T5Config(
        vocab_size=64,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=L,
        num_heads=2,
        dropout_rate=0.2,
        decoder_start_token_id=0,
    )
    model = Seq2SeqLogits(transformers.T5ForConditionalGeneration(cfg))
    # the stacks' shared dropout also runs before the blocks (see the T5 fallback test)
    model.model.encoder.dropout.p = 0.0
    x = {**_text(), "decoder_input_ids": torch.randint(3, 64, (4, 6))}
    names = _selected(model, "last:1")
    assert "model.encoder.block.2.layer.0.dropout" in names
    assert "model.encoder.block.1.layer.0.dropout" not in names
    assert "model.decoder.block.0.layer.1.EncDecAttention.dropout" in names
    fast = _run(model, x, "last:1", strategy="loop")
    full = _run(model, x, names, strategy="loop", reuse_prefix=False)
    assert fast.extras["prefix_detail"] == "blocks 0-1 of 3 under 'model.encoder.block' run once"
    torch.testing.assert_close(fast.samples, full.samples, rtol=0, atol=LOOP_ATOL)


def test_threads_share_one_model_with_cached_blocks() -> None:
    import threading

    model, x, blocks = build("bert")
    alone = _run(model, x, "last:1", strategy="loop")
    got: dict[int, Any] = {}

    def work(i: int) -> None:
        got[i] = _run(model, x, "last:1", strategy="loop")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in got.values():
        torch.testing.assert_close(r.samples, alone.samples, rtol=0, atol=LOOP_ATOL)
    layers = model.get_submodule(blocks)
    assert all("forward" not in layer.__dict__ for layer in layers)


def test_per_block_outputs_run_the_full_model() -> None:
    model, x, _ = build("bert")
    x = {**x, "output_hidden_states": True}
    fast = _run(model, x, "last:1", strategy="loop")
    full = _run(model, x, "last:1", strategy="loop", reuse_prefix=False)
    assert fast.extras["prefix"] == "none"
    assert "output_hidden_states=True" in fast.extras["prefix_detail"]
    torch.testing.assert_close(fast.samples, full.samples, rtol=0, atol=LOOP_ATOL)

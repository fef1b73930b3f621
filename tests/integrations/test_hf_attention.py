"""fast_dropout(attention=True): HF sdpa attention with dropkit's kernel for attention dropout."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import nn

from dropkit.kernels import draw_seed, effective_p, seeded_dropout
from dropkit.sites import mc_mode
from dropkit.swap import fast_dropout
from tests._rate_meter import RateMeter

transformers = pytest.importorskip("transformers")
# dropkit's own module: an import bug must fail the suite, not skip it
import dropkit.integrations.hf_attention as H  # noqa: E402


def _bert(attn_p: float = 0.3, hidden_p: float = 0.0) -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        attention_probs_dropout_prob=attn_p,
        hidden_dropout_prob=hidden_p,
        num_labels=2,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def _llama(attn_p: float = 0.3) -> nn.Module:
    # 4 query heads sharing 2 key/value heads: grouped attention, causal
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attention_dropout=attn_p,
        pad_token_id=0,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def _inputs(left_pad: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 64, (4, 40), generator=g)
    mask = torch.ones_like(ids)
    if left_pad:
        mask[1, :7] = 0  # padding first, as for generation
        mask[3, :20] = 0
    else:
        mask[1, -7:] = 0
        mask[3, -20:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("build", [_bert, _llama])
def test_eval_and_zero_rate_give_the_sdpa_result_bit_for_bit(build: Any) -> None:
    stock = build().eval()
    routed = copy.deepcopy(stock)
    fast_dropout(routed, attention=True)
    assert routed.config._attn_implementation == H.NAME
    inputs = _inputs(left_pad=build is _llama)
    with torch.no_grad():
        assert torch.equal(routed(**inputs).logits, stock(**inputs).logits)
    # training, but no attention dropout (and no hidden dropout): sdpa's own path
    stock, routed = build(attn_p=0.0).train(), build(attn_p=0.0).train()
    fast_dropout(routed, attention=True)
    for m in (stock, routed):
        for mod in m.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = 0.0
    assert torch.equal(routed(**inputs).logits, stock(**inputs).logits)


_checked: list[float] = []


def _checking_attention(module: nn.Module, query: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """sdpa's result, after checking the explicit path (rate 0) against it."""
    want, _ = H._sdpa().sdpa_attention_forward(module, query, *args, **kwargs)
    key, value, mask = args
    got, _ = H.explicit_attention(
        module,
        query,
        key,
        value,
        mask,
        0.0,
        kwargs.get("scaling"),
        kwargs.get("is_causal"),
        kwargs.get("position_bias"),
    )
    _checked.append(float((got - want).abs().max()))
    return want, None


@pytest.mark.parametrize("build,left_pad", [(_bert, False), (_llama, False), (_llama, True)])
def test_explicit_path_computes_the_sdpa_attention(build: Any, left_pad: bool) -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register("dropkit_check", _checking_attention)
    AttentionMaskInterface.register("dropkit_check", sdpa_mask)
    model = build().eval()
    model.set_attn_implementation("dropkit_check")
    _checked.clear()
    with torch.no_grad():
        model(**_inputs(left_pad))
        model(input_ids=_inputs()["input_ids"])  # no mask: causal flag or nothing
    assert len(_checked) == 2 * 2  # two layers, two calls
    assert max(_checked) < 1e-6


def _module(training: bool = True, groups: int = 1, causal: bool = False) -> nn.Module:
    m = nn.Module()
    m.num_key_value_groups = groups
    m.is_causal = causal
    m.train(training)
    return m


def test_training_probabilities_are_dropped_with_the_kernel_mask() -> None:
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, 32, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    mask[1, ..., 25:] = False  # padded keys of the second sequence
    torch.manual_seed(3)
    out, weights = H.dropkit_sdpa_attention(_module(), q, k, v, mask, dropout=0.3)
    assert weights is None and out.shape == (2, 32, 4, 8)
    # naive reference: softmax over the allowed keys, the seeded mask of the same draw
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(8)
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    torch.manual_seed(3)
    dropped = seeded_dropout(probs, 0.3, draw_seed())
    torch.testing.assert_close(out, (dropped @ v).transpose(1, 2), rtol=1e-12, atol=1e-12)
    kept = dropped[probs > 0] != 0
    q_eff = effective_p(0.3)
    assert abs(float((~kept).double().mean()) - q_eff) < 6 * math.sqrt(q_eff / kept.numel())


def test_fully_masked_rows_give_zeros_not_nan() -> None:
    q, k, v = (torch.randn(1, 2, 48, 4, requires_grad=True) for _ in range(3))
    mask = torch.ones(1, 1, 48, 48, dtype=torch.bool)
    mask[..., :5, :] = False  # the first queries may attend to nothing
    out, _ = H.dropkit_sdpa_attention(_module(), q, k, v, mask, dropout=0.2)
    assert torch.equal(out[:, :5], torch.zeros_like(out[:, :5]))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_grouped_causal_attention_matches_sdpa_when_nothing_is_dropped() -> None:
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 4, 16, 8, generator=g)
    k, v = (torch.randn(2, 2, 16, 8, generator=g) for _ in range(2))
    module = _module(groups=2, causal=True)
    got, _ = H.explicit_attention(module, q, k, v, None, 0.0, None, None, None)
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True
    )
    torch.testing.assert_close(got, want.transpose(1, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build", [_bert, _llama])
def test_training_fires_reproduces_and_backpropagates(build: Any) -> None:
    model = build(attn_p=0.4).train()
    fast_dropout(model, attention=True)
    inputs = _inputs(left_pad=build is _llama)
    torch.manual_seed(5)
    a = model(**inputs).logits
    torch.manual_seed(5)
    b = model(**inputs).logits
    meter = RateMeter()
    with meter:
        c = model(**inputs).logits
    assert meter.sdpa_p == []  # the explicit path ran: no fused attention, no F.dropout
    assert not meter.counts
    assert torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)


def test_mc_mode_switches_the_routed_attention_dropout() -> None:
    model = _bert(attn_p=0.25).eval()
    fast_dropout(model, attention=True)
    inputs = _inputs()
    with torch.no_grad():
        ref = model(**inputs).logits
        with mc_mode(model, sites="attention") as handle:
            a, b = model(**inputs).logits, model(**inputs).logits
        assert {s.kind for s in handle.enabled} == {"attention"}
        assert not torch.equal(a, b)  # hidden dropout is 0: only attention is random
        assert torch.equal(model(**inputs).logits, ref)


def test_no_hf_model_is_refused_and_nothing_changes() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2))
    with pytest.raises(
        ValueError,
        match=r"fast_dropout: expected a Hugging Face model with attn_implementation='sdpa' "
        r"for attention=True, but got a Sequential with no Hugging Face model inside\. "
        r"Load the model with attn_implementation='sdpa'",
    ):
        fast_dropout(net, attention=True)
    assert type(net[1]) is nn.Dropout


def test_eager_model_is_refused_and_nothing_changes() -> None:
    model = _bert()
    model.set_attn_implementation("eager")
    with pytest.raises(
        ValueError,
        match=r"but got a BertForSequenceClassification whose Hugging Face models use "
        r"\{'<model>': 'eager'\}\. Load the model with attn_implementation='sdpa' \(or call "
        r"model\.set_attn_implementation\('sdpa'\)\), or leave attention=False\.",
    ):
        fast_dropout(model, attention=True)
    assert model.config._attn_implementation == "eager"
    assert any(type(m) is nn.Dropout for m in model.modules())


def test_attention_flag_must_be_a_bool() -> None:
    with pytest.raises(
        TypeError,
        match=r"fast_dropout: expected attention to be a bool, but got 'yes'\. Pass True or",
    ):
        fast_dropout(_bert(), attention="yes")  # type: ignore[arg-type]


def test_routing_twice_and_undoing() -> None:
    model = _bert()
    assert fast_dropout(model, attention=True) > 0
    assert fast_dropout(model, attention=True) == 0  # modules already swapped; still routed
    assert model.config._attn_implementation == H.NAME
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"

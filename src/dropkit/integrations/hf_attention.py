"""Attention dropout through dropkit's kernel for Hugging Face models.

Models that use transformers' ``sdpa`` attention apply attention-probability
dropout inside ``torch.nn.functional.scaled_dot_product_attention``
(``dropout_p=self.dropout.p`` while training). On CPU that dropout draws from
PyTorch's single-threaded Bernoulli sampler over a ``(batch, heads, L, L)``
tensor per layer, the largest dropout of the model; swapping ``nn.Dropout``
modules cannot reach it.

:func:`route_attention` registers one more attention implementation,
``"dropkit_sdpa"``, with transformers' ``AttentionInterface`` (and its mask
builder, the ``sdpa`` one) and switches the model to it. The implementation
hands every call to transformers' own ``sdpa_attention_forward`` except while
training with a non-zero attention rate; then it computes the same attention
explicitly (scores, mask, softmax, dropkit dropout, ``@ value``), with the
``sdpa`` path's handling of grouped key/value heads, causal masks and
position biases. Evaluation is therefore bit for bit the ``sdpa`` result, and
the gate (``module.training`` and the rate the model passes) is unchanged, so
:func:`dropkit.mc_mode` and :func:`dropkit.set_dropout` work as before.

Measured by ``dropkit bench kernels`` on a MiniLM-L6-shaped BERT (batch 32 x
128 tokens, 2-core CPU): see BENCHMARKS.md. ``model.set_attn_implementation("sdpa")``
undoes the switch. Needs transformers with ``AttentionInterface`` and
``masking_utils`` (4.53 or newer).

References:
    Vaswani et al., "Attention is all you need", NeurIPS 2017 (attention
    dropout on the softmax probabilities).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import torch
from torch import nn

from dropkit._optional import require
from dropkit.swap import no_attention_model, register_attention_router
from dropkit.uncertainty.masks import ROUTED_ATTENTION

#: The name registered with transformers' AttentionInterface (mc_predict finds
#: routed models by it).
NAME = ROUTED_ATTENTION
_ROUTABLE = ("sdpa", NAME)
_registered = False


def _interfaces(caller: str) -> tuple[Any, Any, ModuleType, Any]:
    """Return the attention and mask registries of transformers and its sdpa module."""
    require("transformers", "hf", caller)
    try:
        from transformers import AttentionInterface
        from transformers.integrations import sdpa_attention
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as exc:  # transformers older than 4.53
        import transformers

        raise ImportError(
            f"{caller}: expected transformers with AttentionInterface and masking_utils "
            f"(4.53 or newer), but got transformers {transformers.__version__}. "
            "Upgrade with: pip install -U 'transformers>=4.53'"
        ) from exc
    return AttentionInterface, AttentionMaskInterface, sdpa_attention, sdpa_mask


@functools.lru_cache(maxsize=1)
def _sdpa() -> ModuleType:
    """Return the sdpa attention module of transformers (resolved once: it runs per call)."""
    return _interfaces("dropkit_sdpa_attention")[2]


def _register(caller: str) -> None:
    global _registered
    if _registered:
        return
    attention, masks, _, sdpa_mask = _interfaces(caller)
    attention.register(NAME, dropkit_sdpa_attention)
    masks.register(NAME, sdpa_mask)
    _registered = True


def dropkit_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    position_bias: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The ``sdpa`` attention of transformers, with dropkit's kernel for attention dropout.

    Same arguments and result as ``sdpa_attention_forward``; only a training
    call with ``dropout > 0`` (and none of the extras the explicit path does
    not implement: ``softcap``, attention sinks ``s_aux``) takes the explicit
    path.

    Args:
        module: The attention module (reads ``training``,
            ``num_key_value_groups`` and ``is_causal``).
        query: ``(batch, heads, L, head_dim)``.
        key: ``(batch, kv_heads, S, head_dim)``.
        value: ``(batch, kv_heads, S, value_dim)``.
        attention_mask: Boolean (``True`` = attend) or additive float mask
            broadcastable to ``(batch, heads, L, S)``, or None.
        dropout: Attention-probability dropout rate the model passes.
        scaling: Score scale; ``head_dim ** -0.5`` when None.
        is_causal: Overrides ``module.is_causal``.
        position_bias: Additive per-layer bias (T5-style), or None.
        **kwargs: Passed on to ``sdpa_attention_forward``.

    Shape:
        - Output: ``(batch, L, heads, value_dim)``, and None for the weights.

    Returns:
        ``(attn_output, None)``.
    """
    explicit = (
        module.training
        and dropout > 0.0
        and kwargs.get("softcap") is None
        and kwargs.get("s_aux") is None
    )
    if not explicit:
        return _sdpa().sdpa_attention_forward(  # type: ignore[no-any-return]
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            position_bias=position_bias,
            **kwargs,
        )
    return explicit_attention(
        module, query, key, value, attention_mask, dropout, scaling, is_causal, position_bias
    )


def explicit_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float,
    scaling: float | None,
    is_causal: bool | None,
    position_bias: torch.Tensor | None,
) -> tuple[torch.Tensor, None]:
    """The explicit attention of :func:`dropkit_sdpa_attention` (any ``dropout``).

    Follows ``sdpa_attention_forward``'s preparation (grouped key/value heads
    repeated, ``is_causal`` only without a mask and for more than one query,
    position bias folded into the mask) and PyTorch's definition of
    ``scaled_dot_product_attention``; rows whose mask allows nothing give 0,
    as PyTorch's own math path does. The softmax runs in float32 for half
    precision inputs.
    """
    from dropkit.uncertainty.masks import routed_dropout

    sdpa_attention = _sdpa()
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = sdpa_attention.repeat_kv(key, groups)
        value = sdpa_attention.repeat_kv(value, groups)
    q_len, kv_len = query.shape[2], key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if position_bias is not None:
        attention_mask = sdpa_attention.create_position_bias_mask(
            position_bias, attention_mask, causal, query, key
        )
        causal = False
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    allowed = None
    if causal:
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril()
    elif attention_mask is not None and attention_mask.dtype == torch.bool:
        allowed = attention_mask
    elif attention_mask is not None:
        scores = scores + attention_mask
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    half = query.dtype in (torch.float16, torch.bfloat16)
    probs = scores.softmax(-1, dtype=torch.float32).to(query.dtype) if half else scores.softmax(-1)
    if allowed is not None:
        probs = probs.masked_fill(~allowed.any(-1, keepdim=True), 0.0)
    # row-keyed masks under mc_predict(seed=...), else dropkit's kernel as usual
    probs = routed_dropout(module, probs, dropout)
    out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), None


def sdpa_roots(model: nn.Module, caller: str) -> list[nn.Module]:
    """The outermost HF models inside ``model`` that use (switchable) ``sdpa`` attention.

    Raises:
        ValueError: If there is none (naming what was found instead).
    """
    from dropkit.sites.hf_config import pretrained_roots

    _interfaces(caller)
    roots = pretrained_roots(model)
    impls = {
        path or "<model>": getattr(m.config, "_attn_implementation", None) for path, m in roots
    }
    picked = [
        m
        for _, m in roots
        if getattr(m.config, "_attn_implementation", None) in _ROUTABLE
        # models whose attention ignores AttentionInterface only warn when switched
        and getattr(m, "_can_set_attn_implementation", lambda: True)()
    ]
    if not picked:
        got = (
            f"a {type(model).__name__} whose Hugging Face models use {impls}"
            if roots
            else f"a {type(model).__name__} with no Hugging Face model inside"
        )
        raise no_attention_model(caller, got)
    return picked


def route_attention(roots: list[nn.Module]) -> None:
    """Switch each model in ``roots`` (from :func:`sdpa_roots`) to ``dropkit_sdpa``."""
    _register("fast_dropout")
    for root in roots:
        root.set_attn_implementation(NAME)  # type: ignore[operator]


# fast_dropout(attention=True) finds this adapter through dropkit.swap.ATTENTION_ADAPTERS
register_attention_router("transformers", sdpa_roots, route_attention)

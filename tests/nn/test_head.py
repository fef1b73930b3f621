"""ClassifierHead: structure, pooling against naive references, MiniLM outputs, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit
from dropkit.nn.head import ClassifierHead


def test_structure_and_sites() -> None:
    head = ClassifierHead(8, 3, hidden=4, p=0.2)
    kinds = [type(m) for m in head.children()]
    assert kinds == [nn.Dropout, nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
    assert [(s.path, s.p) for s in dropkit.find_dropout(head)] == [
        ("dropout1", 0.2),
        ("dropout2", 0.2),
    ]
    dropkit.set_dropout(head, 0.3)
    assert head.dropout1.p == head.dropout2.p == 0.3


def test_eval_forward_matches_naive(seed: int) -> None:
    head = ClassifierHead(6, 3, hidden=5, pooling=None).eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    head.double()
    ref = head.out(torch.nn.functional.gelu(head.dense(x)))
    assert torch.allclose(head(x), ref)


def test_mean_pooling_respects_mask(seed: int) -> None:
    head = ClassifierHead(3, 2, pooling="mean")
    states = torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = head.pool(states, mask)
    naive = torch.stack([states[0, :2].mean(0), states[1].mean(0)])
    assert torch.allclose(pooled, naive)
    assert torch.allclose(head.pool(states), states.mean(1))
    # Padding content has no effect.
    states2 = states.clone()
    states2[0, 2:] = 1e6
    assert torch.allclose(head.pool(states2, mask), naive)


def test_cls_pooling_and_model_output(minilm_dir) -> None:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    backbone = AutoModel.from_pretrained(minilm_dir).eval()
    batch = tok(
        ["a short one", "a much longer sentence with padding"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        out = backbone(**batch)
    head = ClassifierHead(backbone.config.hidden_size, 2, hidden=16, pooling="cls").eval()
    logits = head(out)
    assert logits.shape == (2, 2)
    assert torch.equal(logits, head(out.last_hidden_state)) and torch.equal(
        head.pool(out), out.last_hidden_state[:, 0]
    )
    mean_head = ClassifierHead(backbone.config.hidden_size, 2, pooling="mean").eval()
    first = out.last_hidden_state[0, : int(batch["attention_mask"][0].sum())].mean(0)
    assert torch.allclose(mean_head.pool(out, batch["attention_mask"])[0], first, atol=1e-6)


def test_training_mode_drops_at_rate_p(seed: int) -> None:
    # Identity-like probe: count zeros entering the first Linear.
    head = ClassifierHead(1000, 2, hidden=4, p=0.3, pooling=None).train()
    seen = {}
    head.dense.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    head(torch.ones(20, 1000))
    zeros = int((seen["x"] == 0).sum())
    n, p = 20_000, 0.3
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(zeros - n * p) < 6 * sigma


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"p": 1.0}, ValueError, r"ClassifierHead: expected p in \[0, 1\), but got 1.0"),
        (
            {"activation": "swish"},
            ValueError,
            r"ClassifierHead: expected activation to be one of \['gelu', 'relu', 'silu', 'tanh'\]",
        ),
        (
            {"pooling": "max"},
            ValueError,
            r"ClassifierHead: expected pooling to be one of \['cls', 'mean'\]",
        ),
        ({"hidden": 0}, ValueError, r"ClassifierHead: expected hidden >= 1, but got 0"),
    ],
)
def test_bad_construction(kwargs, exc, message) -> None:
    with pytest.raises(exc, match=message):
        ClassifierHead(8, 2, **kwargs)


def test_bad_inputs() -> None:
    head = ClassifierHead(4, 2, pooling="mean")
    with pytest.raises(
        ValueError,
        match=r"expected inputs whose last dimension is in_features=4, but got \(2, 3, 5\)",
    ):
        head(torch.randn(2, 3, 5))
    with pytest.raises(
        ValueError, match=r"expected a 3-D input \(N, L, H\) for pooling='mean', but got \(2, 4\)"
    ):
        head(torch.randn(2, 4))
    with pytest.raises(
        ValueError, match=r"expected an attention_mask of shape \(2, 3\), but got \(2, 4\)"
    ):
        head(torch.randn(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(
        ValueError, match=r"expected at least one unmasked token per example, but got \[3.0, 0.0\]"
    ):
        head(torch.randn(2, 3, 4), torch.tensor([[1.0, 1, 1], [0, 0, 0]]))
    with pytest.raises(
        TypeError, match="expected a tensor or a model output with last_hidden_state, but got 'str'"
    ):
        head("text")

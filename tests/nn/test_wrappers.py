"""WeightDrop, EmbeddingDropout and LayerDrop: wrapping, checkpoints, recurrent layers, ranks."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dn


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- WeightDrop ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (lambda: nn.Linear(4, 3), ["weight"]),
        (lambda: nn.LSTM(4, 6, num_layers=2), ["weight_hh_l0", "weight_hh_l1"]),
        (lambda: nn.GRU(4, 6, bidirectional=True), ["weight_hh_l0", "weight_hh_l0_reverse"]),
        (lambda: nn.RNN(4, 6), ["weight_hh_l0"]),
    ],
)
def test_weight_drop_defaults_and_checkpoint_keys(layer, expected):
    torch.manual_seed(0)
    bare = layer()
    keys = list(bare.state_dict())
    snapshot = {k: v.clone() for k, v in bare.state_dict().items()}
    wd = dn.WeightDrop(layer(), p=0.3)
    assert wd.weights == expected
    assert list(wd.state_dict()) == keys  # same keys, same order as the bare layer
    wd.load_state_dict(snapshot, strict=True)  # bare checkpoint -> wrapped
    fresh = layer()
    fresh.load_state_dict(wd.state_dict(), strict=True)  # wrapped checkpoint -> bare
    for k in keys:
        assert torch.equal(fresh.state_dict()[k], snapshot[k])


def test_weight_drop_inside_a_model_keeps_the_model_checkpoint():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    saved = copy.deepcopy(model.state_dict())
    x = torch.randn(4, 3)
    expected = model(x)
    model[2] = dn.WeightDrop(model[2], p=0.5)
    assert list(model.state_dict()) == list(saved)
    model.load_state_dict(saved, strict=True)
    assert torch.equal(model.eval()(x), expected)
    # the raw, parametrised key layout loads as well
    raw = {k: v for k, v in saved.items() if not k.startswith("2.")}
    raw["2.module.parametrizations.weight.original"] = saved["2.weight"]
    raw["2.module.bias"] = saved["2.bias"]
    model.load_state_dict(raw, strict=True)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_weight_drop_rnn_uses_one_mask_for_all_time_steps(cls):
    torch.manual_seed(0)
    rnn = cls(3, 5)
    wd = dn.WeightDrop(copy.deepcopy(rnn), p=0.5, generator=gen(4))
    x = torch.randn(6, 2, 3)
    out, _ = wd(x)
    # rebuild the masked weight with the same seed and run a bare layer with it
    drop = wd._drops()[0]
    drop.generator = gen(4)
    w_eff = drop(wd.module.parametrizations.weight_hh_l0.original)
    assert (w_eff == 0).any()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(w_eff)
    torch.testing.assert_close(out, rnn(x)[0])
    wd.eval()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(wd.module.parametrizations.weight_hh_l0.original)
    torch.testing.assert_close(wd(x)[0], rnn(x)[0])


def test_weight_drop_lstm_trains_and_zero_grad_where_dropped():
    wd = dn.WeightDrop(nn.LSTM(3, 4), p=0.5, generator=gen(1))
    original = wd.module.parametrizations.weight_hh_l0.original
    opt = torch.optim.SGD(wd.parameters(), lr=0.1)
    for step in range(3):
        wd.generator = gen(step)
        out, _ = wd(torch.randn(5, 2, 3))
        opt.zero_grad()
        out.pow(2).sum().backward()
        drop = wd._drops()[0]
        drop.generator = gen(step)
        dropped = drop(original.detach()) == 0
        assert original.grad is not None
        assert torch.all(original.grad[dropped] == 0) and original.grad[~dropped].abs().sum() > 0
        opt.step()


def test_weight_drop_p_updates_every_parametrisation_and_rejects_bad_values():
    wd = dn.WeightDrop(nn.LSTM(3, 4, num_layers=2), p=0.2)
    wd.p = 0.6
    assert [d.p for d in wd._drops()] == [0.6, 0.6]
    with pytest.raises(ValueError, match=r"WeightDrop: expected p in \[0, 1\], but got 2\. "):
        wd.p = 2
    assert wd.p == 0.6 and [d.p for d in wd._drops()] == [0.6, 0.6]


def test_weight_drop_unwrap_gives_the_plain_layer_back():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4)
    keys = list(lstm.state_dict())
    before = copy.deepcopy(lstm.state_dict())
    wd = dn.WeightDrop(lstm, p=0.5)
    wd(torch.randn(2, 1, 3))
    plain = wd.unwrap()
    assert type(plain) is nn.LSTM and list(plain.state_dict()) == keys
    for k in keys:
        assert torch.equal(plain.state_dict()[k], before[k])
    plain(torch.randn(2, 1, 3))


def test_weight_drop_explicit_weights_on_a_conv():
    conv = nn.Conv2d(2, 3, 3)
    wd = dn.WeightDrop(conv, p=0.5, weights=["weight"], generator=gen(0))
    assert wd(torch.ones(1, 2, 5, 5)).shape == (1, 3, 3, 3)
    assert list(wd.state_dict()) == ["bias", "weight"] or list(wd.state_dict()) == [
        "weight",
        "bias",
    ]


def test_weight_drop_deepcopy_is_independent():
    wd = dn.WeightDrop(nn.Linear(4, 4), p=0.5)
    clone = copy.deepcopy(wd)
    clone.p = 0.1
    assert wd.p == 0.5 and wd._drops()[0].p == 0.5


# --- EmbeddingDropout ------------------------------------------------------------------


def test_embedding_dropout_wraps_and_shares_the_weight():
    emb = nn.Embedding(10, 4, padding_idx=0)
    ed = dn.EmbeddingDropout(emb, p=0.2)
    assert ed.weight is emb.weight and ed.padding_idx == 0
    assert list(ed.state_dict()) == list(emb.state_dict()) == ["weight"]
    other = nn.Embedding(10, 4)
    other.load_state_dict(ed.state_dict())
    ed.load_state_dict(other.state_dict())
    back = ed.to_embedding()
    assert back.weight is ed.weight and back.padding_idx == 0


def test_embedding_dropout_drops_a_token_everywhere_it_occurs():
    weight = torch.rand(50, 3) + 0.5
    ids = torch.randint(0, 50, (8, 30), generator=gen(0))
    out = DF.embedding_dropout(weight, ids, 0.5, generator=gen(1))
    dropped = (out == 0).all(-1)
    for token in ids.unique():
        where = ids == token
        assert dropped[where].all() or not dropped[where].any()
    assert dropped.any() and not dropped.all()


def test_embedding_dropout_equals_masking_the_whole_matrix():
    weight = torch.randn(20, 3, dtype=torch.float64)
    ids = torch.randint(0, 20, (4, 6), generator=gen(0))
    rows = DF.embedding_dropout(
        torch.ones(20, 1, dtype=torch.float64), torch.arange(20), 0.4, generator=gen(2)
    )
    expected = F.embedding(ids, weight * rows)
    torch.testing.assert_close(DF.embedding_dropout(weight, ids, 0.4, generator=gen(2)), expected)


def test_embedding_dropout_padding_row_gets_no_gradient():
    ed = dn.EmbeddingDropout(num_embeddings=6, embedding_dim=2, padding_idx=0, p=0.0)
    ed(torch.tensor([0, 1, 0, 2])).sum().backward()
    assert ed.weight.grad is not None
    assert torch.equal(ed.weight.grad[0], torch.zeros(2))
    assert torch.equal(ed.weight.grad[1], torch.ones(2))


# --- LayerDrop -------------------------------------------------------------------------


def _stack(n: int = 6, **kwargs) -> dn.LayerDrop:
    return dn.LayerDrop([nn.Linear(2, 2) for _ in range(n)], **kwargs)


def test_layer_drop_is_a_module_list_with_random_iteration_in_training():
    stack = _stack(p=0.5, generator=gen(0))
    plain = nn.ModuleList(list(stack.children()))
    assert list(stack.state_dict()) == list(plain.state_dict())
    assert len(stack) == 6 and stack[2] is plain[2]
    lengths = {len(list(stack)) for _ in range(30)}
    assert len(lengths) > 1 and max(lengths) <= 6
    stack.eval()
    assert list(stack) == list(plain)
    x = torch.randn(3, 2)
    expected = x
    for layer in plain:
        expected = layer(expected)
    assert torch.equal(stack(x), expected)


def test_layer_drop_slicing_and_concatenation_keep_all_layers_and_settings():
    stack = _stack(p=0.3, generator=gen(0))
    assert isinstance(stack[1:4], dn.LayerDrop) and len(stack[1:4]) == 3
    assert stack[1:4].p == 0.3
    joined = stack + _stack(2)
    assert len(joined) == 8 and joined.p == 0.3
    assert "LayerDrop(\n  p=0.3" in repr(stack) and repr(stack).count("Linear") == 6


def test_layer_drop_forward_passes_extra_arguments():
    class Add(nn.Module):
        def forward(self, x, bias):
            return x + bias

    stack = dn.LayerDrop([Add(), Add()], p=0.0)
    assert torch.equal(stack(torch.zeros(2), bias=1.0), torch.full((2,), 2.0))


def test_layer_drop_same_on_all_ranks_works_without_distributed():
    def draws():
        torch.manual_seed(3)  # the private generator is seeded from the global one
        stack = _stack(16, p=0.5, same_on_all_ranks=True)
        return [stack.keep() for _ in range(3)]

    first = draws()
    assert first == draws()
    assert first[0] != first[1]  # a fresh decision on every pass
    assert "same_on_all_ranks=True" in repr(_stack(2, same_on_all_ranks=True))


_RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch, torch.distributed as dist
    from torch import nn
    from dropkit.nn import LayerDrop
    rank, port = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(100 + rank)  # different global seeds on purpose
    shared = LayerDrop([nn.Identity() for _ in range(16)], p=0.5, same_on_all_ranks=True)
    local = LayerDrop([nn.Identity() for _ in range(16)], p=0.5)
    print(json.dumps([[shared.keep() for _ in range(4)], [local.keep() for _ in range(4)]]))
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_layer_drop_same_decisions_on_every_rank():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RANK_SCRIPT, str(rank), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    (shared0, local0), (shared1, local1) = (json.loads(out) for out, _ in outs)
    assert shared0 == shared1
    assert local0 != local1  # without the option, ranks disagree (different seeds)

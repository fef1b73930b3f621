"""The dropout registry: names, kinds, creation with sensible kwargs, errors."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import dropkit
import dropkit.nn as dn
from dropkit._registry import create_dropout, list_dropouts, register_dropout, registered

KINDS = {
    "dropout": "element",
    "dropout1d": "spatial",
    "dropout2d": "spatial",
    "dropout3d": "spatial",
    "alpha": "alpha",
    "feature_alpha": "alpha",
    "gaussian": "gaussian",
    "locked": "locked",
    "embedding": "embedding",
    "weight": "weight",
    "attention": "attention",
    "path": "path",
    "block": "block",
    "layer": "layer",
    "concrete": "concrete",
}
VOCABULARY = {
    "element", "spatial", "alpha", "gaussian", "locked", "embedding", "weight",
    "attention", "path", "block", "layer", "concrete",
}  # fmt: skip


def test_list_dropouts_names_every_variant():
    assert list_dropouts() == sorted(KINDS)
    assert dropkit.list_dropouts() == sorted(KINDS)


@pytest.mark.parametrize(("name", "kind"), sorted(KINDS.items()))
def test_each_variant_has_its_kind_and_is_exported(name, kind):
    cls = registered()[name]
    assert cls.kind == kind and kind in VOCABULARY
    assert getattr(dn, cls.__name__) is cls
    assert cls.__name__ in dn.__all__


def test_create_plain_variants():
    assert repr(create_dropout("locked", p=0.3)) == "LockedDropout(p=0.3, batch_first=False)"
    assert repr(dropkit.create_dropout("dropout", p=0.2)) == "Dropout(p=0.2, inplace=False)"
    block = create_dropout("block", p=0.2, block_size=3)
    assert (block.p, block.block_size) == (0.2, 3)
    for name in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha", "gaussian", "path"):
        module = create_dropout(name)
        assert isinstance(module, nn.Module) and 0 < module.p < 1


def test_create_wrapping_variants_with_their_module_argument():
    lin = nn.Linear(3, 3)
    wd = create_dropout("weight", module=lin, p=0.3)
    assert wd.module is lin and wd.p == 0.3
    lstm = create_dropout("weight", module=nn.LSTM(3, 4), p=0.2)
    assert lstm.weights == ["weight_hh_l0"]
    emb = nn.Embedding(7, 2)
    ed = create_dropout("embedding", embedding=emb, p=0.1)
    assert ed.weight is emb.weight
    assert create_dropout("embedding", num_embeddings=7, embedding_dim=2).weight.shape == (7, 2)
    cd = create_dropout("concrete", module=nn.Linear(3, 1), p=0.4)
    assert cd.p == pytest.approx(0.4)
    stack = create_dropout("layer", layers=[nn.Linear(2, 2), nn.Linear(2, 2)], p=0.1)
    assert len(stack) == 2
    assert stack.eval()(torch.zeros(1, 2)).shape == (1, 2)


def test_unknown_name_lists_the_known_ones():
    known = ", ".join(sorted(KINDS))
    message = (
        "create_dropout: expected a registered dropout name, but got 'lockd'. "
        f"Known names: {known}."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        create_dropout("lockd", p=0.3)


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "register_dropout: expected a new name, but got 'locked'. "
            "It already names LockedDropout; choose another name."
        ),
    ):

        @register_dropout("locked")
        class Other(nn.Module):
            pass

    assert registered()["locked"] is dn.LockedDropout

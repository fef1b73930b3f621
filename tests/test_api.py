"""The curated public API is a contract: snapshot it and check every name resolves."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import subprocess
import sys
import types

import pytest
import torch

import dropkit

EXPECTED = [
    "AlphaDropout",
    "AttentionDropout",
    "ClassifierHead",
    "ConcreteDropout",
    "DropBlock2d",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "DropoutChange",  # dropkit.sites: what set_dropout returns (issue 14)
    "DropoutSite",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "GuardHandle",  # dropkit.sites: what guard returns (issue 14)
    "LayerDrop",
    "LockedDropout",
    "MCMode",  # dropkit.sites: what mc_mode returns (issue 14)
    "MCResult",
    "WeightDrop",
    "__version__",
    "active",
    "baselines",
    "compare_uncertainty",
    "create_dropout",
    "fast_dropout",
    "find_dropout",
    "functional",
    "guard",
    "integrations",
    "kernels",
    "list_dropouts",
    "mc_mode",
    "mc_predict",
    "metrics",
    "nn",
    "schedules",
    "score_pool",  # dropkit.score: pools of any size (issue 18)
    "set_dropout",
    "sweep",
    "training",
    "uncertainty",
]


def test_all_snapshot() -> None:
    assert dropkit.__all__ == EXPECTED


# the capitalised names that are not layers: records and context handles
RECORDS = {"DropoutChange", "DropoutSite", "GuardHandle", "MCMode", "MCResult"}
LAYERS = {n for n in EXPECTED if n[0].isupper()} - RECORDS


@pytest.mark.parametrize("name", EXPECTED)
def test_every_public_name_is_what_it_names(name: str) -> None:
    obj = getattr(dropkit, name)
    if name == "__version__":
        assert obj == importlib.metadata.version("dropkit")
    elif isinstance(obj, types.ModuleType):
        assert obj.__name__ == f"dropkit.{name}"  # the subpackage itself
    else:
        # a class or function re-exported under its own name from its home module
        assert obj.__name__ == name and obj.__module__.startswith("dropkit.")
        assert getattr(importlib.import_module(obj.__module__), name) is obj
        if name in LAYERS:
            assert issubclass(obj, torch.nn.Module) and getattr(dropkit.nn, name) is obj
        else:
            assert inspect.isclass(obj) or inspect.isfunction(obj)


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        dropkit.nope  # noqa: B018


def test_import_is_light() -> None:
    # Importing dropkit must not pull in the optional heavy dependencies.
    code = (
        "import sys, dropkit, dropkit.nn, dropkit.functional;"
        "heavy = {'transformers', 'optuna', 'matplotlib', 'timm', 'laplace',"
        " 'lightning', 'sklearn'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

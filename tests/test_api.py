"""The curated public API is a contract: snapshot it and check every name resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
    "DropoutSite",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "LayerDrop",
    "LockedDropout",
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
    "set_dropout",
    "sweep",
    "training",
    "uncertainty",
]


def test_all_snapshot() -> None:
    assert dropkit.__all__ == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(dropkit, name) is not None


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

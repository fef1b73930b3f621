"""A small hand-made metrics.json (schema version 1) for report tests; no training."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest


def _curve(start: float, end: float, n: int, bend: float = 0.0) -> list[float]:
    # exponential approach plus an optional late upturn (overfitting)
    return [
        round(end + (start - end) * math.exp(-4 * i / n) + bend * (i / n) ** 2, 4) for i in range(n)
    ]


def _method(name: str, k: int, **numbers: Any) -> dict[str, Any]:
    # deterministic pseudo-scores: in-distribution low, out-of-distribution shifted by k
    scores_in = [round(0.05 + 0.4 * ((i * 37) % 100) / 100, 4) for i in range(60)]
    scores_out = [round(0.2 + 0.1 * k + 0.5 * ((i * 53) % 100) / 100, 4) for i in range(50)]
    conf = [None, None, None, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.96]
    acc = [None, None, None, 0.3, 0.4, 0.5 + 0.01 * k, 0.6, 0.72, 0.83, 0.95]
    count = [0, 0, 0, 2, 3, 4, 6, 9, 20, 256]
    coverage = [i / 20 for i in range(1, 21)]
    risk = [round(0.02 * c**2 / (1 + 0.5 * k), 5) for c in coverage]
    return {
        "name": name,
        "ood_score": "predictive entropy",
        "reliability": {"confidence": conf, "accuracy": acc, "count": count},
        "scores_in": scores_in,
        "scores_out": scores_out,
        "risk_coverage": {"coverage": coverage, "risk": risk},
        **numbers,
    }


def small_metrics() -> dict[str, Any]:
    """Hand-made numbers with known best values per column."""
    n = 12
    epochs = list(range(1, n + 1))
    return {
        "schema_version": 1,
        "title": "dropkit demo: test fixture",
        "created": "2025-01-01T00:00:00Z",
        "dropkit_version": "0.1.0",
        "dataset": {
            "name": "digits",
            "description": "scikit-learn digits, trained on classes 0-4",
            "in_classes": [0, 1, 2, 3, 4],
            "ood_classes": [5, 6, 7, 8, 9],
            "n_train": 500,
            "n_val": 100,
            "n_test": 300,
            "n_ood": 897,
        },
        "settings": [
            {
                "name": "no dropout",
                "description": "p = 0",
                "epochs": epochs,
                "train_loss": _curve(1.6, 0.01, n),
                "val_loss": _curve(1.6, 0.10, n, bend=0.2),
                "val_acc": [0.9] * n,
                "p": [0.0] * n,
                "time_s": 1.0,
            },
            {
                "name": "fixed p=0.2",
                "description": "constant",
                "epochs": epochs,
                "train_loss": _curve(1.6, 0.05, n),
                "val_loss": _curve(1.6, 0.08, n),
                "val_acc": [0.95] * n,
                "p": [0.2] * n,
                "time_s": 1.1,
            },
        ],
        "methods": [
            _method(
                "Deterministic softmax",
                0,
                accuracy=0.97,
                nll=0.12,
                ece=0.030,
                brier=0.05,
                auroc=0.80,
                aurc=0.010,
                forward_passes=1,
                time_s=0.01,
                params=5000,
            ),
            _method(
                "MC dropout (T=30)",
                1,
                accuracy=0.98,
                nll=0.08,
                ece=0.015,
                brier=0.04,
                auroc=0.90,
                aurc=0.006,
                forward_passes=30,
                time_s=0.2,
                params=5000,
            ),
        ],
        "ece_bins": 10,
        "ece_binning": "width",
        "sweep": {
            "parameter": "p",
            "metric": "validation NLL",
            "lower_is_better": True,
            "engine": "grid",
            "trials": [
                {"p": 0.0, "value": 0.12, "val_acc": 0.95},
                {"p": 0.2, "value": 0.09, "val_acc": 0.96},
                {"p": 0.5, "value": 0.10, "val_acc": 0.96},
            ],
        },
        "convergence": {
            "samples": [1, 2, 4, 8, 16, 32],
            "nll": [0.20, 0.14, 0.11, 0.095, 0.0905, 0.09],
            "accuracy": [0.95, 0.96, 0.97, 0.97, 0.97, 0.97],
            "change": [0.05, 0.03, 0.02, 0.01, 0.005, 0.0],
        },
        "notes": ["Hand-made fixture."],
    }


@pytest.fixture
def metrics() -> dict[str, Any]:
    return small_metrics()


@pytest.fixture
def metrics_path(tmp_path: Path, metrics: dict[str, Any]) -> Path:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    return path

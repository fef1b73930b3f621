"""HTML reports rendered from ``metrics.json`` alone.

``dropkit demo`` writes ``metrics.json``; :func:`render` turns that file (and
nothing else) into one self-contained ``report.html`` whose plots are PNG
images embedded as base64, so the report opens offline, can be mailed as one
file, and can be tested without training anything.

The reliability diagram follows Guo et al. (2017), "On Calibration of Modern
Neural Networks"; the risk-coverage curve and AURC follow Geifman et al.
(2019), "Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers".

Schema of ``metrics.json`` (``schema_version`` 1)
-------------------------------------------------

Every section except ``methods`` is optional; a missing section simply leaves
its plot out. Numbers are plain JSON floats; ``null`` marks a value that could
not be computed (for example an empty reliability bin).

.. code-block:: text

    {
      "schema_version": 1,
      "title": str,                      # page title
      "created": str,                    # ISO 8601 time stamp
      "dropkit_version": str,
      "dataset": {                       # what was trained and tested on
        "name": str, "description": str,
        "in_classes": [int], "ood_classes": [int],
        "n_train": int, "n_val": int, "n_test": int, "n_ood": int
      },
      "settings": [                      # training runs -> learning curves
        {"name": str,                    # e.g. "no dropout", "fixed p=0.2"
         "description": str,
         "epochs": [int],                # 1-based epoch numbers
         "train_loss": [float],          # mean training NLL, dropout off
         "val_loss": [float],            # validation NLL
         "val_acc": [float],             # validation accuracy in [0, 1]
         "p": [float],                   # drop rate per epoch (learned mean
                                         # rate for ConcreteDropout)
         "time_s": float}
      ],
      "methods": [                       # uncertainty methods -> headline table
        {"name": str,                    # e.g. "MC dropout (T=30)"
         "accuracy": float, "nll": float, "ece": float, "brier": float,
         "auroc": float,                 # OOD AUROC of `ood_score`
         "aurc": float,                  # area under the risk-coverage curve
         "ood_score": str,               # e.g. "mutual information"
         "forward_passes": int,          # per input, at test time
         "time_s": float,                # fit + predict wall time
         "params": int,                  # stored parameters (all members)
         "reliability": {"confidence": [float|null], "accuracy": [float|null],
                         "count": [int]},          # one entry per bin
         "scores_in": [float],           # OOD score on in-distribution test
         "scores_out": [float],          # OOD score on held-out classes
         "risk_coverage": {"coverage": [float], "risk": [float]}}
      ],
      "ece_bins": int, "ece_binning": "width" | "mass",
      "sweep": {                         # validation metric vs p
        "parameter": "p", "metric": str,  # e.g. "validation NLL"
        "lower_is_better": bool, "engine": str,
        "trials": [{"p": float, "value": float, "val_acc": float}]
      },
      "convergence": {                   # MC estimate vs number of samples T
        "samples": [int],
        "nll": [float], "accuracy": [float],
        "change": [float]                # mean |probs_T - probs_Tmax|
      },
      "notes": [str]
    }

Example:
    >>> from dropkit.report import render
    >>> render("out/demo/metrics.json", "out/demo/report.html")  # doctest: +SKIP
"""

from __future__ import annotations

from dropkit._io import atomic_write_bytes, atomic_write_text
from dropkit.report.render import SCHEMA_VERSION, render, render_html, validate_metrics

__all__ = [
    "SCHEMA_VERSION",
    "atomic_write_bytes",
    "atomic_write_text",
    "render",
    "render_html",
    "validate_metrics",
]

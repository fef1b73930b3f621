"""Last-layer Laplace approximation through laplace-torch (Daxberger et al., 2021).

A Gaussian posterior over the weights of the final ``nn.Linear`` only, with a
Kronecker-factored (default) GGN Hessian at the trained weights (MAP) and a
scalar prior precision tuned post hoc, by the marginal likelihood (default) or
by a validation-NLL grid search. Predictions use the linearised (GLM)
predictive with either the probit approximation (one forward pass, closed form;
the result holds only the mean, so no mutual information) or ``samples`` draws
of the last-layer logits (a full :class:`MCResult` with ``S = samples``).
laplace-torch works on a deep copy of the model, in eval mode; the model you
pass is left untouched.

References:
    Daxberger, Kristiadi, Immer, Eschenhagen, Bauer, Hennig (2021). Laplace
    redux - effortless Bayesian deep learning. NeurIPS.
    Kristiadi, Hein, Hennig (2020). Being Bayesian, even just a bit, fixes
    overconfidence in ReLU networks. ICML.
    MacKay (1992). The evidence framework applied to classification networks.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import nn

from dropkit._optional import require
from dropkit._validation import check_choice, check_int, check_module, renamed_kwargs
from dropkit.baselines._common import check_batch_size, check_inputs, eval_mode
from dropkit.metrics._checks import as_labels
from dropkit.metrics.information import entropy
from dropkit.uncertainty.result import MCResult

STRUCTURES = ("kron", "diag", "full")
PRIOR_METHODS = ("marglik", "gridsearch")
PREDICTIVES = ("probit", "mc")


def _laplace_module() -> Any:
    # asdl (a laplace-torch dependency) uses the deprecated torch.jit.script at import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return require("laplace", "laplace", "LastLayerLaplace")


class LastLayerLaplace:
    """Last-layer Laplace around a trained classifier, predicting ``MCResult``.

    Args:
        model: Trained classifier whose last module with parameters is the
            final ``nn.Linear`` producing logits.
        hessian_structure: ``"kron"``, ``"diag"`` or ``"full"``.
        prior_optimization: ``"marglik"`` (evidence, training data only) or
            ``"gridsearch"`` (NLL on the validation set given to :meth:`fit`).

    References:
        Daxberger et al. (2021). Laplace redux. NeurIPS.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        hessian_structure: str = "kron",
        prior_optimization: str = "marglik",
    ) -> None:
        self.model = check_module("LastLayerLaplace", model)
        self.hessian_structure = check_choice(
            "LastLayerLaplace", hessian_structure, "hessian_structure", STRUCTURES
        )
        self.prior_optimization = check_choice(
            "LastLayerLaplace", prior_optimization, "prior_optimization", PRIOR_METHODS
        )
        self._la: Any = None
        self.fit_time_s: float | None = None

    @renamed_kwargs(labels="target")
    def fit(
        self,
        inputs: torch.Tensor,
        target: torch.Tensor,
        *,
        val: tuple[torch.Tensor, torch.Tensor] | None = None,
        batch_size: int = 256,
    ) -> LastLayerLaplace:
        """Fit the posterior on training data and tune the prior precision.

        Args:
            inputs: Training inputs ``(N, ...)``.
            target: Training labels ``(N,)``.
            val: Validation ``(inputs, labels)``, required for ``"gridsearch"``.
            batch_size: Batch size of the Hessian pass.

        Returns:
            ``self`` (``fit_time_s`` holds the seconds spent).

        Raises:
            ValueError: If ``"gridsearch"`` is used without ``val``.
        """
        lp = _laplace_module()
        caller = "LastLayerLaplace.fit"
        check_inputs(caller, inputs)
        bs = check_int(caller, batch_size, "batch_size")
        data = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(inputs, _labels(caller, target, inputs)), batch_size=bs
        )
        if self.prior_optimization == "gridsearch" and val is None:
            raise ValueError(
                f"{caller}: expected val=(inputs, labels) with prior_optimization='gridsearch', "
                "but got None. Pass a validation set or use 'marglik'."
            )
        start = time.perf_counter()
        with eval_mode(self.model), warnings.catch_warnings():
            # laplace-torch warns that the tuning link is probit; that is documented here.
            warnings.filterwarnings("ignore", message=".*link_approx.*")
            la = lp.Laplace(
                self.model,
                "classification",
                subset_of_weights="last_layer",
                hessian_structure=self.hessian_structure,
            )
            la.fit(data)
            if self.prior_optimization == "marglik" or val is None:
                la.optimize_prior_precision(pred_type="glm", method="marglik", link_approx="probit")
            else:
                vx, vy = val
                vloader = torch.utils.data.DataLoader(
                    torch.utils.data.TensorDataset(vx, _labels(caller, vy, vx)), batch_size=bs
                )
                la.optimize_prior_precision(
                    pred_type="glm",
                    method="gridsearch",
                    val_loader=vloader,
                    link_approx="probit",
                )
        self._la = la
        self.fit_time_s = time.perf_counter() - start
        return self

    @property
    def prior_precision(self) -> float:
        """The tuned scalar prior precision."""
        return float(self._fitted().prior_precision.flatten()[0])

    @property
    def posterior_size(self) -> int:
        """Number of last-layer weights treated probabilistically."""
        return int(self._fitted().n_params)

    def _fitted(self) -> Any:
        if self._la is None:
            raise RuntimeError(
                "LastLayerLaplace: expected a fitted posterior, but got an unfitted "
                "instance. Call fit(inputs, labels) first."
            )
        return self._la

    def predict(
        self,
        inputs: torch.Tensor,
        *,
        predictive: str = "probit",
        samples: int = 100,
        seed: int = 0,
        keep_samples: bool = False,
        batch_size: int | None = None,
    ) -> MCResult:
        """Linearised predictive of the last-layer posterior.

        Args:
            inputs: Input batch ``(N, ...)``.
            predictive: ``"probit"`` (closed form, mean only) or ``"mc"``
                (``samples`` draws of the logits, full decomposition).
            samples: Draws for ``"mc"``.
            seed: Seed of the draws for ``"mc"``.
            keep_samples: Store the ``(S, N, C)`` draws (``"mc"`` only).
            batch_size: Chunk size.

        Shape:
            - inputs: ``(N, ...)``.
            - result.mean: ``(N, C)``.

        Returns:
            An :class:`MCResult` (float64); with ``"probit"`` only ``mean`` and
            ``predictive_entropy`` are set. ``extras`` holds ``method``,
            ``predictive`` and ``forward_passes`` (1 per input).
        """
        caller = "LastLayerLaplace.predict"
        la = self._fitted()
        mode = check_choice(caller, predictive, "predictive", PREDICTIVES)
        s = check_int(caller, samples, "samples")
        check_inputs(caller, inputs)
        bs = check_batch_size(caller, batch_size) or inputs.shape[0]
        gen = torch.Generator().manual_seed(seed)
        outs = []
        with torch.no_grad():
            for start in range(0, inputs.shape[0], bs):
                chunk = inputs[start : start + bs]
                if mode == "probit":
                    outs.append(la(chunk, pred_type="glm", link_approx="probit").double())
                else:
                    outs.append(
                        la.predictive_samples(
                            chunk, pred_type="glm", n_samples=s, generator=gen
                        ).double()
                    )
        if mode == "probit":
            mean = torch.cat(outs)
            mean = mean / mean.sum(-1, keepdim=True)
            result = MCResult(
                task="classification",
                mean=mean,
                samples_used=torch.ones(mean.shape[0], dtype=torch.int64),
                predictive_entropy=entropy(mean),
            )
        else:
            result = MCResult.from_samples(torch.cat(outs, 1), keep_samples=keep_samples)
        result.extras.update(method="laplace", predictive=mode, forward_passes=1)
        return result


def _labels(caller: str, labels: Any, inputs: torch.Tensor) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    n_classes = int(labels.max()) + 1 if labels.numel() and not labels.is_floating_point() else 1
    return as_labels(caller, labels, inputs.shape[0], max(n_classes, 1))

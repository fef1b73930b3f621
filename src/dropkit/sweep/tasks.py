"""What ``dropkit sweep`` trains: built-in tasks and user factories.

A task is a training function ``train(params, report) -> Predictions``: it
builds a model from a trial's ``params`` (see :mod:`dropkit.sweep.space`),
trains it, calls ``report(epoch, predictions)`` after every epoch (the study
scores the predictions, reports them to Optuna and raises
``optuna.TrialPruned`` when the pruner says so) and returns the final
validation predictions. Its ``kind`` attribute (``"classification"`` or
``"regression"``) and optional ``kinds`` (the site kinds it has) tell the
study which objectives apply and which per-kind rates exist.

Built in:

* ``digits``: scikit-learn's 8x8 digits (bundled, no download), a 64-128-128-10
  MLP with dropout on the input and after each hidden layer, Adam, scored with
  MC-dropout probabilities on a fixed validation split.
* ``uci:NAME``: one split of a UCI regression set (``--data-dir``), the
  network of Gal & Ghahramani (2016) trained by the batched trainer; the
  trial's ``weight_decay`` is the factor ``reg`` on the squared weights and
  the model precision ``tau`` is fixed (the middle of the dataset's grid, or
  ``--task-option tau=...``).
* ``package.module:factory``: ``factory(options) -> train``, with ``options``
  the CLI's ``--task-option KEY=VALUE`` pairs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dropkit.demo.digits import ALL_CLASSES, DigitsSplit, build_mlp, fit, split_digits
from dropkit.sweep.objectives import Predictions
from dropkit.sweep.space import site_rate

Report = Callable[[int, Predictions], None]
Train = Callable[[dict[str, Any], Report], Predictions]
_WHERE = "sweep task"


class DigitsTask:
    """Dropout MLP on scikit-learn digits (1797 images, 10 classes).

    The pipeline of :mod:`dropkit.demo.digits`: all ten classes, one random
    75/25 train / validation split (:meth:`split`), a 64-H-H-10 MLP with
    :class:`torch.nn.Dropout` on the input and after each hidden layer (rates
    set from the trial every epoch), mini-batch Adam (batch 64, learning rate
    ``1e-3``, the trial's ``weight_decay``).

    Args:
        epochs: Training epochs per trial.
        samples: MC passes for the validation predictions.
        seed: Seed of the split, initial weights and dropout masks.
        hidden: Hidden width.
    """

    kind = "classification"
    kinds = ("element",)

    def __init__(
        self, epochs: int = 10, samples: int = 8, seed: int = 0, hidden: int = 128
    ) -> None:
        data = self.split(seed)
        self.train_x, self.train_y = data.train
        self.val_x, self.val_y = data.val
        self.epochs, self.samples, self.seed, self.hidden = epochs, samples, seed, hidden

    @staticmethod
    def split(seed: int) -> DigitsSplit:
        """The task's split: all ten classes, unstratified 75/25, not standardised."""
        return split_digits(seed, classes=ALL_CLASSES, fractions=(0.75, 0.25), caller=_WHERE)

    def __call__(self, params: dict[str, Any], report: Report) -> Predictions:
        """Train one configuration, reporting validation predictions per epoch."""
        model = build_mlp(
            len(ALL_CLASSES), hidden=self.hidden, p=0.0, seed=self.seed, input_dropout=True,
            dropout=nn.Dropout,
        )  # fmt: skip
        drops = [m for m in model if isinstance(m, nn.Dropout)]

        def set_rates(epoch: int) -> None:
            for i, drop in enumerate(drops):
                drop.p = site_rate(params, "element", i / (len(drops) - 1), epoch / self.epochs)

        preds = [self._predict(model)]

        def report_epoch(epoch: int) -> None:
            preds.append(self._predict(model))
            report(epoch, preds[-1])

        fit(
            model, self.train_x, self.train_y, epochs=self.epochs, lr=1e-3,
            weight_decay=params.get("weight_decay", 0.0), batch_size=64, order_seed=self.seed,
            before_epoch=set_rates, after_epoch=report_epoch,
        )  # fmt: skip
        return preds[-1]

    def _predict(self, model: nn.Module) -> Predictions:
        model.train()  # MC dropout: masks stay on (the model has no batch norm)
        with torch.no_grad():
            probs = torch.stack(
                [torch.softmax(model(self.val_x), -1) for _ in range(self.samples)]
            ).mean(0)  # (N, C): probabilities averaged, never logits
        return Predictions(probs, self.val_y, "classification")


class UCITask:
    """One UCI split, the Gal & Ghahramani network, for a regression sweep.

    The trial's ``p`` is the drop rate (input and hidden) and its
    ``weight_decay`` the factor ``reg`` on the squared weights; ``tau`` (model
    precision) is the middle of the dataset's grid unless given.

    Args:
        data_dir: UCI folder.
        name: Dataset name.
        split: Split number; the first 80% of its training rows fit, the rest validate.
        epochs: Training epochs per trial.
        samples: MC passes for validation.
        tau: Model precision in the target's units.
        report_every: Epochs between reports.
    """

    kind = "regression"
    kinds = ("element",)
    # one rate for input and hidden dropout, fixed over training; reg is small at UCI sizes
    profiles = ("constant",)
    schedules = ("constant",)
    weight_decay = (1e-8, 1e-4)

    def __init__(
        self,
        data_dir: str | Path,
        name: str,
        split: int = 0,
        epochs: int = 400,
        samples: int = 100,
        tau: float | None = None,
        report_every: int = 50,
    ) -> None:
        from dropkit.bench.uci.data import fit_validation, load_uci, standardize

        data = load_uci(data_dir, name)
        fit, val = fit_validation(data.train[split])
        mx, sx = standardize(data.x[fit])
        my, sy = standardize(data.y[fit][:, None])
        self.x = torch.from_numpy((data.x[fit] - mx) / sx).float()
        self.y = torch.from_numpy((data.y[fit] - my[0]) / sy[0]).float()
        self.val_x = torch.from_numpy((data.x[val] - mx) / sx).float()
        self.val_y = data.y[val]
        self.my, self.sy = float(my[0]), float(sy[0])
        self.tau = tau if tau is not None else sorted(data.tau_values)[len(data.tau_values) // 2]
        self.n_hidden, self.epochs, self.samples = data.n_hidden, epochs, samples
        self.report_every, self.split = max(1, report_every), split

    def __call__(self, params: dict[str, Any], report: Report) -> Predictions:
        """Train one configuration, reporting MC validation samples every few epochs."""
        from dropkit.bench.uci.batched import BatchedMLP

        p = float(params["p"])
        net = BatchedMLP(
            [self.x],
            [self.y],
            p=[p],
            reg=[params.get("weight_decay", 0.0)],
            seeds=[(self.split, 7)],
            n_hidden=self.n_hidden,
        )
        preds = self._predict(net)
        for start in range(0, self.epochs, self.report_every):
            net.train(min(self.report_every, self.epochs - start))
            preds = self._predict(net)
            report(net.epoch - 1, preds)
        return preds

    def _predict(self, net: Any) -> Predictions:
        from dropkit.bench.uci.reference import ReferenceMLP
        from dropkit.bench.uci.streams import keep_scale, keep_threshold

        w1, b1, w2, b2 = (t[0] for t in net.weights)
        model = ReferenceMLP(net.d, net.n_hidden)
        with torch.no_grad():
            model.hidden.weight.copy_(w1.T)
            model.hidden.bias.copy_(b1[0])
            model.out.weight.copy_(w2.T)
            model.out.bias.copy_(b2[0])
            n, k = self.val_x.shape[0], net.d + net.n_hidden
            words = torch.from_numpy(net.streams[0].mask_words(self.samples * n, k))
            x = self.val_x.repeat(self.samples, 1)
            out = model(x, words, keep_threshold(net.p[0]), keep_scale(net.p[0]))
        samples = out.view(self.samples, n).double() * self.sy + self.my  # (S, N)
        return Predictions(samples, torch.from_numpy(self.val_y), "regression", self.tau)


def load_task(spec: str, options: dict[str, str], *, data_dir: str | None = None) -> Train:
    """Build the training function named by ``spec``.

    Args:
        spec: ``"digits"``, ``"uci:NAME"`` or ``"package.module:factory"``.
        options: ``KEY=VALUE`` options for the task (``epochs``, ``samples``,
            ``seed``, ``split``, ...; all passed as strings to user factories).
        data_dir: UCI folder for ``uci:NAME``.

    Raises:
        ValueError: On an unknown spec, a missing ``--data-dir`` or a factory
            that cannot be imported.
    """
    ints = {k: int(v) for k, v in options.items() if k in ("epochs", "samples", "seed", "split")}
    if spec == "digits":
        return DigitsTask(**{k: v for k, v in ints.items() if k != "split"})
    if spec.startswith("uci:"):
        if not data_dir:
            raise ValueError(
                f"{_WHERE}: expected --data-dir with {spec!r}, but got none. "
                "Pass the folder holding one sub-folder per UCI dataset."
            )
        kwargs: dict[str, Any] = {k: v for k, v in ints.items() if k != "seed"}
        if "tau" in options:
            kwargs["tau"] = float(options["tau"])
        return UCITask(data_dir, spec[4:], **kwargs)
    module_name, _, attr = spec.partition(":")
    if not attr or not module_name:
        raise ValueError(
            f"{_WHERE}: expected 'digits', 'uci:NAME' or 'package.module:factory', but got "
            f"{spec!r}. Name a built-in task or a factory."
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"{_WHERE}: expected an importable factory, but got {spec!r} ({exc}). "
            "Check the module path (is it on PYTHONPATH?) and the attribute name."
        ) from None
    return factory(options)

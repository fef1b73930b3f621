"""Which dropout rate to start from: the usual scenario table, made explicit.

:func:`recommend_rate` answers from a named scenario, or from the size of a
model and of its training set using a documented rule of thumb. Both return
a range and the reason, so the choice can be logged next to the run.

References:
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 2014 (rates of 0.1-0.5 on small data).
    Devlin et al., "BERT", NAACL 2019 (0.1 in pre-training and fine-tuning).
    Touvron et al., "LLaMA", 2023 and Hoffmann et al., "Training
    Compute-Optimal Large Language Models", 2022 (no dropout when data is
    plentiful; about 20 tokens per parameter).
    Gal & Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
    Steiner et al., "How to train your ViT?", TMLR 2022 (augmentation
    replaces dropout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from dropkit._validation import _fail, check_int

__all__ = ["SCENARIOS", "Recommendation", "recommend_rate"]


@dataclass(frozen=True)
class Recommendation:
    """A recommended dropout range.

    Attributes:
        low: Lower end of the range.
        high: Upper end of the range.
        reason: Why, in one or two sentences.
        scenario: The scenario name this came from, if any.
    """

    low: float
    high: float
    reason: str
    scenario: str | None = None

    @property
    def p(self) -> float:
        """A single starting value: the middle of the range, rounded to 0.05."""
        return round(round((self.low + self.high) / 2 / 0.05) * 0.05, 2)


#: scenario name -> (low, high, reason)
SCENARIOS: dict[str, tuple[float, float, str]] = {
    "llm-pretraining": (
        0.0,
        0.0,
        "Large-model pre-training sees each token about once: the data itself regularises, "
        "and dropout only slows learning.",
    ),
    "small-transformer": (
        0.1,
        0.1,
        "BERT-base-sized transformers trained on modest data overfit without it; 0.1 is the "
        "standard rate for hidden and attention dropout.",
    ),
    "fine-tuning-small-data": (
        0.05,
        0.1,
        "A pretrained model fine-tuned on a few thousand examples memorises them quickly; light "
        "dropout keeps it general without erasing pretrained features.",
    ),
    "classification-head": (
        0.1,
        0.3,
        "A freshly initialised head has no pretrained prior and benefits from stronger "
        "regularisation than the backbone.",
    ),
    "mc-dropout": (
        0.1,
        0.2,
        "Dropout kept on at inference approximates a Bayesian posterior; 0.1-0.2 gives useful "
        "spread without hurting accuracy much.",
    ),
    "vit-augmented": (
        0.0,
        0.1,
        "Vision transformers trained with strong augmentation (RandAugment, Mixup) already get "
        "their regularisation from the data pipeline.",
    ),
}

# Rule for models (from scratch): examples (or tokens) per parameter -> range.
_RATIO_RULE: tuple[tuple[float, float, float], ...] = (
    (20.0, 0.0, 0.0),
    (1.0, 0.0, 0.1),
    (0.01, 0.1, 0.2),
    (0.0, 0.2, 0.3),
)
_SMALL_FINE_TUNE = 10_000


def _count(caller: str, model: Any) -> int:
    if isinstance(model, nn.Module):
        return sum(p.numel() for p in model.parameters())
    return check_int(caller, model, "parameter count")


def recommend_rate(
    scenario_or_model: str | nn.Module | int,
    *,
    dataset_size: int | None = None,
    pretrained: bool = False,
) -> Recommendation:
    """Recommend a dropout range for a scenario, or for a model and dataset.

    With a scenario name the table in :data:`SCENARIOS` answers. With a model
    (or its parameter count) and ``dataset_size`` the rule is:

    * ``pretrained=True`` (fine-tuning): fewer than 10,000 examples ->
      0.05-0.1; otherwise keep the standard 0.1.
    * from scratch, by ``r = dataset_size / parameters`` (examples, or tokens
      for language models, per parameter): ``r >= 20`` -> 0.0 (data-rich, the
      compute-optimal regime); ``1 <= r < 20`` -> 0.0-0.1; ``0.01 <= r < 1``
      -> 0.1-0.2; ``r < 0.01`` -> 0.2-0.3 (far more parameters than data).

    Args:
        scenario_or_model: A scenario name, an ``nn.Module`` or a parameter count.
        dataset_size: Training examples (tokens for language models); required
            with a model.
        pretrained: Whether the model starts from pretrained weights.

    Returns:
        A :class:`Recommendation` with ``low``, ``high`` and ``reason``.

    Raises:
        ValueError: For an unknown scenario (the message lists the known ones),
            or a model without ``dataset_size``.
        TypeError: If the first argument is neither a name, a module nor an int.

    Example:
        >>> r = recommend_rate("classification-head")
        >>> r.low, r.high
        (0.1, 0.3)
        >>> recommend_rate(110_000_000, dataset_size=5_000, pretrained=True).high
        0.1
    """
    caller = "recommend_rate"
    if isinstance(scenario_or_model, str):
        if scenario_or_model not in SCENARIOS:
            known = ", ".join(SCENARIOS)
            raise _fail(
                ValueError,
                caller,
                "a known scenario",
                scenario_or_model,
                f"Known scenarios: {known}; or pass a model with dataset_size=.",
            )
        low, high, reason = SCENARIOS[scenario_or_model]
        return Recommendation(low, high, reason, scenario_or_model)
    params = _count(caller, scenario_or_model)
    if dataset_size is None:
        raise _fail(
            ValueError,
            caller,
            "dataset_size with a model",
            None,
            "Pass dataset_size= (training examples, or tokens for a language model), "
            f"or a scenario name ({', '.join(SCENARIOS)}).",
        )
    size = check_int(caller, dataset_size, "dataset_size")
    if not isinstance(pretrained, bool):
        raise _fail(TypeError, caller, "pretrained to be a bool", pretrained, "Pass True or False.")
    if pretrained:
        if size < _SMALL_FINE_TUNE:
            low, high, reason = SCENARIOS["fine-tuning-small-data"]
            return Recommendation(
                low,
                high,
                f"Fine-tuning on {size:,} examples (< {_SMALL_FINE_TUNE:,}). {reason}",
                "fine-tuning-small-data",
            )
        return Recommendation(
            0.1,
            0.1,
            f"Fine-tuning on {size:,} examples: keep the standard 0.1 the model was trained with.",
        )
    ratio = size / max(params, 1)
    low, high = next((lo, hi) for threshold, lo, hi in _RATIO_RULE if ratio >= threshold)
    reason = f"{size:,} examples for {params:,} parameters ({ratio:.3g} per parameter): " + (
        "data-rich, dropout would only slow training."
        if high == 0.0
        else "the fewer examples per parameter, the more dropout is needed."
    )
    return Recommendation(low, high, reason)

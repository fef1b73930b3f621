"""The one way dropkit calls a model on user inputs.

Every place that runs a user's model on inputs it was handed (the functional
probe of ``find_dropout``, the placement advisor, ``mc_predict`` and its
splitters, the benchmarks) reads the inputs the same way:

- a mapping (a ``dict``, a Hugging Face ``BatchEncoding``) is keyword
  arguments: ``model(**inputs)``;
- a ``tuple`` is positional arguments: ``model(*inputs)``, as in
  ``torch.jit.trace`` and ``torch.export``;
- anything else, a ``list`` included, is one positional argument:
  ``model(inputs)`` (a list of tensors stays one input).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["call_model"]


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """Call ``model`` on ``inputs`` read as the module docstring says.

    Args:
        model: Any callable, usually an ``nn.Module``.
        inputs: A mapping (keyword arguments), a tuple (positional arguments)
            or one argument.

    Returns:
        Whatever ``model`` returns.

    Example:
        >>> call_model(lambda a, b: a + b, (1, 2))
        3
        >>> call_model(len, [1, 2, 3])
        3
        >>> call_model(lambda *, x: x * 2, {"x": 4})
        8
    """
    if isinstance(inputs, Mapping):
        return model(**dict(inputs))
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)

"""Argument checks shared by every public API, with one error wording.

Every message follows ``"{caller}: expected {what}, but got {value!r}. {fix}"`` so a
user sees which call failed, what it wanted, what it received and what to do.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeAlias, TypeVar

import torch
from numpy.typing import ArrayLike
from torch import nn

TensorLike: TypeAlias = torch.Tensor | ArrayLike
"""What tensor arguments of metrics, calibrators and acquisition accept:
a tensor, a NumPy array or a nested sequence of numbers."""

_E = TypeVar("_E", bound=Exception)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _fail(exc_type: type[_E], caller: str, what: str, value: object, fix: str) -> _E:
    """Build the house-style error; the one error helper that every check raises.

    The message reads ``"{caller}: expected {what}, but got {value!r}. {fix}"``.
    """
    return exc_type(f"{caller}: expected {what}, but got {value!r}. {fix}")


def check_p(caller: str, p: object, *, allow_one: bool = False, name: str = "p") -> float:
    """Validate a drop probability and return it as a float.

    Args:
        caller: Name of the layer or function, used in the message.
        p: The candidate probability.
        allow_one: Whether ``p == 1`` (drop everything) is allowed.
        name: Argument name used in the message.

    Returns:
        ``p`` as a Python float.

    Raises:
        TypeError: If ``p`` is not a real number (strings, tensors and bools included).
        ValueError: If ``p`` is NaN or outside ``[0, 1)`` (``[0, 1]`` with ``allow_one``).
    """
    if isinstance(p, bool) or isinstance(p, torch.Tensor) or not isinstance(p, numbers.Real):
        fix = (
            "Pass p.item() for a one-element tensor."
            if isinstance(p, torch.Tensor)
            else "Pass a float such as 0.1."
        )
        raise _fail(TypeError, caller, f"{name} to be a float", p, fix)
    value = float(p)
    upper = "1]" if allow_one else "1)"
    ok = 0.0 <= value <= 1.0 if allow_one else 0.0 <= value < 1.0
    if math.isnan(value) or not ok:
        raise _fail(
            ValueError,
            caller,
            f"{name} in [0, {upper}",
            p,
            "Use a probability such as 0.1.",
        )
    return value


def check_module(caller: str, model: object, name: str = "model") -> nn.Module:
    """Raise TypeError unless ``model`` is an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise _fail(
            TypeError,
            caller,
            f"{name} to be a torch.nn.Module",
            type(model).__name__,
            "Pass the model itself, not its output or state_dict.",
        )
    return model


def check_int(caller: str, value: object, name: str, *, minimum: int = 1) -> int:
    """Validate an integer argument with a lower bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(TypeError, caller, f"{name} to be an int", value, f"Pass an int >= {minimum}.")
    if value < minimum:
        raise _fail(ValueError, caller, f"{name} >= {minimum}", value, f"Pass an int >= {minimum}.")
    return int(value)


def check_rank(caller: str, x: torch.Tensor, ranks: Iterable[int], layout: str) -> None:
    """Raise ValueError unless ``x.dim()`` is one of ``ranks``."""
    allowed = tuple(ranks)
    if x.dim() not in allowed:
        names = " or ".join(f"{r}-D" for r in allowed)
        raise _fail(
            ValueError,
            caller,
            f"a {names} input {layout}",
            tuple(x.shape),
            "Reshape the input or pick the variant for this rank.",
        )


def check_choice(caller: str, value: object, name: str, choices: Iterable[str]) -> str:
    """Validate a string option against known names (enums pass their value)."""
    known = sorted(choices)
    raw = getattr(value, "value", value)
    if not isinstance(raw, str) or raw not in known:
        raise _fail(
            ValueError,
            caller,
            f"{name} to be one of {known}",
            value,
            f"Pick one of {', '.join(known)}.",
        )
    return raw


def check_generator(caller: str, generator: object) -> torch.Generator | None:
    """Validate an optional ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise _fail(
            TypeError,
            caller,
            "generator to be a torch.Generator or None",
            type(generator).__name__,
            "Create one with torch.Generator().manual_seed(0).",
        )
    return generator


def check_bool(caller: str, value: object, name: str, *, optional: bool = False) -> bool:
    """Validate a boolean option: only ``True`` / ``False`` (and numpy bools).

    Truthy stand-ins are refused, since ``inplace="no"`` would otherwise mean on.

    Args:
        caller: Name of the layer or function, used in the message.
        value: The candidate.
        name: Argument name used in the message.
        optional: Whether ``None`` is allowed (returned as ``False``; callers that
            give ``None`` a meaning test for it first).

    Returns:
        ``value`` as a Python bool.

    Raises:
        TypeError: If ``value`` is not a bool.
    """
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ == "bool":
        return bool(value)
    if optional and value is None:
        return False
    what = "None, True or False" if optional else "True or False"
    raise _fail(
        TypeError, caller, f"{name} to be {what}", value, f"Pass {name}=True or {name}=False."
    )


def check_names(caller: str, value: object, name: str) -> list[str]:
    """Validate one name or a list of names; a single string is one name, not its characters.

    Raises:
        TypeError: If ``value`` is neither a string nor an iterable of strings.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, torch.Tensor)):
        items = list(value)
        bad = [v for v in items if not isinstance(v, str)]
        if not bad:
            return items
        value = bad[0]
    raise _fail(
        TypeError,
        caller,
        f"{name} to be a name or a list of names",
        value,
        f"Pass {name}=['name', ...] (a single string is one name).",
    )


def check_callable(
    caller: str, fn: Callable[..., object], name: str, nargs: int, example: str
) -> None:
    """Raise TypeError unless ``fn`` can be called with ``nargs`` positional arguments.

    Callables whose signature cannot be read (some builtins) pass unchecked.
    """
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*range(nargs))
    except TypeError:
        raise _fail(
            TypeError,
            caller,
            f"{name} to take {nargs} positional argument{'s' if nargs != 1 else ''}",
            f"{getattr(fn, '__name__', type(fn).__name__)}{sig}",
            f"Pass e.g. {example}.",
        ) from None


def check_flags(caller: str, **flags: object) -> None:
    """Apply :func:`check_bool` to each keyword (``check_flags(w, training=t, inplace=i)``)."""
    for name, value in flags.items():
        check_bool(caller, value, name)


def renamed_kwargs(**renames: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Keep old keyword names working for one release: ``@renamed_kwargs(labels="target")``.

    A call with an old name warns ``DeprecationWarning`` naming the new one and
    is forwarded under the new name; passing both is a ``TypeError``. The
    wrapper keeps the function's name, module, signature and docstring (so its
    doctest still runs).

    Args:
        **renames: ``old_name="new_name"`` pairs.

    Returns:
        A decorator.

    Example:
        >>> @renamed_kwargs(labels="target")
        ... def score(probs, target):
        ...     return target
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     score(0, labels=1)
        1
        >>> print(caught[0].message)
        score: the keyword labels= is deprecated; pass target= instead.
    """

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        name = fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{name}: expected one of {old}= (deprecated) and {new}=, but got "
                            f"both. Pass {new}= only."
                        )
                    warnings.warn(
                        f"{name}: the keyword {old}= is deprecated; pass {new}= instead.",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate

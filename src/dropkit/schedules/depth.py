"""Depth profiles: dropout rates that change with a layer's depth.

A depth profile maps a site's depth fraction ``d`` in ``[0, 1]`` (0 = nearest
the input, 1 = deepest) to a value in ``[0, 1]``. Passed directly to
``dropkit.set_dropout`` it gives each site its rate; given to
:class:`~dropkit.training.DropoutScheduler` it is a multiplier of the
scheduled rate, so ``linear_depth(1.0)`` ramps from 0 at the input to the
full scheduled ``p`` at the deepest site. :func:`block_fractions` places
``depth`` equally spaced blocks on ``[0, 1]``;
:func:`dropkit.functional.drop_path_rates` is ``linear_depth(p)`` read there.

References:
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016 (drop
    rate growing linearly with depth).
    Zoph et al., "Learning Transferable Architectures for Scalable Image
    Recognition", CVPR 2018 (ScheduledDropPath).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from dropkit._validation import _fail, check_int, check_p, renamed_kwargs
from dropkit.schedules.time import lerp

__all__ = ["DepthProfile", "block_fractions", "constant_depth", "depth_profile", "linear_depth"]


def _check_fraction(caller: str, depth: object) -> float:
    if isinstance(depth, bool) or not isinstance(depth, numbers.Real):
        raise _fail(TypeError, caller, "a depth fraction (float)", depth, "Pass a float in [0, 1].")
    d = float(depth)
    if math.isnan(d) or not 0.0 <= d <= 1.0:
        raise _fail(
            ValueError, caller, "a depth fraction in [0, 1]", depth, "Pass a float in [0, 1]."
        )
    return d


class DepthProfile:
    """A validated function ``depth_fraction -> value in [0, 1]``.

    Args:
        fn: The raw function.
        name: Text shown by ``repr``.
    """

    def __init__(self, fn: Callable[[float], float], name: str) -> None:
        self._fn = fn
        self._name = name

    def __call__(self, depth: float) -> float:
        """Return the validated value at depth fraction ``depth``.

        Raises:
            ValueError: If ``depth`` is outside ``[0, 1]`` or the value is NaN or
                outside ``[0, 1]``.
        """
        d = _check_fraction(self._name, depth)
        return check_p(f"{self._name} at depth {d:g}", self._fn(d), allow_one=True)

    def __repr__(self) -> str:
        return self._name


@renamed_kwargs(p_max="high", p_min="low")
def linear_depth(high: float, low: float = 0.0) -> DepthProfile:
    """Rise linearly from ``low`` at the input to ``high`` at the deepest site.

    ``low + (high - low) * d`` at depth fraction ``d`` (the one linear formula,
    :func:`~dropkit.schedules.time.lerp`); ``p_max=`` / ``p_min=`` are the
    deprecated keyword names of ``high`` / ``low``.

    Example:
        >>> f = linear_depth(0.3)
        >>> f(0.0), f(0.5), f(1.0)
        (0.0, 0.15, 0.3)
    """
    hi = check_p("linear_depth", high, allow_one=True, name="high")
    lo = check_p("linear_depth", low, allow_one=True, name="low")
    return DepthProfile(lambda d: lerp(lo, hi, d), f"linear_depth({lo:g} -> {hi:g})")


def block_fractions(depth: int, caller: str = "block_fractions") -> list[float]:
    """Depth fractions of ``depth`` equally spaced blocks: ``i / (depth - 1)``.

    The first block sits at 0 (nearest the input), the last at 1; a single
    block sits at 0.

    Raises:
        TypeError: If ``depth`` is not an int.
        ValueError: If ``depth < 1``.

    Example:
        >>> block_fractions(3)
        [0.0, 0.5, 1.0]
    """
    depth = check_int(caller, depth, "depth", minimum=1)
    if depth == 1:
        return [0.0]
    return [i / (depth - 1) for i in range(depth)]


def constant_depth(p: float) -> DepthProfile:
    """The same value at every depth.

    Example:
        >>> constant_depth(0.1)(0.7)
        0.1
    """
    value = check_p("constant_depth", p, allow_one=True)
    return DepthProfile(lambda d: value, f"constant_depth({value:g})")


def depth_profile(fn: Callable[[float], float], name: str | None = None) -> DepthProfile:
    """Wrap a custom function of the depth fraction as a validated profile.

    Raises:
        TypeError: If ``fn`` is not callable.

    Example:
        >>> f = depth_profile(lambda d: 0.1 + 0.2 * d**2, name="quadratic")
        >>> round(f(1.0), 6)
        0.3
    """
    if isinstance(fn, DepthProfile):
        return fn
    if not callable(fn):
        raise _fail(
            TypeError,
            "depth_profile",
            "a callable depth_fraction -> value",
            type(fn).__name__,
            "Pass e.g. lambda d: 0.1 * d or dropkit.training.linear_depth(0.3).",
        )
    return DepthProfile(fn, name or f"depth_profile({getattr(fn, '__qualname__', 'fn')})")

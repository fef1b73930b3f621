"""Dropout-rate schedules: pure, validated functions of the training step.

A schedule is a callable ``step -> p``. Every schedule here (and every user
function wrapped by :func:`as_schedule`) checks that the step is an int
``>= 0`` and that the returned ``p`` is a probability in ``[0, 1)``; a bad
value raises ``ValueError`` naming the schedule, the step and the value, so it
never reaches a model. Schedules compose: :func:`sequence` runs schedules one
after another, :func:`scale` multiplies, :func:`clip`, :func:`minimum` and
:func:`maximum` bound them.

References:
    Morerio et al., "Curriculum Dropout", ICCV 2017 (rate rising from 0).
    Liu et al., "Dropout Reduces Underfitting", ICML 2023 (early and late
    dropout).
    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017 (the cosine curve).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import TypeAlias

from dropkit._validation import _fail, check_int, check_p

__all__ = [
    "Schedule",
    "ScheduleLike",
    "as_schedule",
    "check_step",
    "clip",
    "constant",
    "cosine",
    "curriculum",
    "early",
    "late",
    "lerp",
    "linear",
    "maximum",
    "minimum",
    "piecewise",
    "scale",
    "sequence",
    "warmup",
]


ScheduleLike: TypeAlias = Callable[[int], float] | float
"""What every schedule argument accepts: a :class:`Schedule`, any ``step -> p``, or a constant."""


def lerp(start: float, end: float, t: float) -> float:
    """Return the point a fraction ``t`` of the way from ``start`` to ``end``.

    The one linear formula behind :func:`linear`, :func:`~dropkit.schedules.linear_depth`
    and :func:`~dropkit.functional.drop_path_rates`; exact at both ends.
    """
    return start * (1.0 - t) + end * t


def check_step(caller: str, step: object) -> int:
    """Validate a training step: an int ``>= 0`` (bools rejected)."""
    return check_int(caller, step, "step", minimum=0)


def _fmt(value: float) -> str:
    return f"{value:g}"


class Schedule:
    """A validated dropout-rate schedule: ``schedule(step) -> p``.

    Subclasses implement :meth:`value`; calling the schedule validates the
    step and the returned rate.

    Args:
        fn: Function ``step -> p`` computing the raw rate.
        name: Text shown by ``repr``.
    """

    def __init__(self, fn: Callable[[int], float], name: str) -> None:
        self._fn = fn
        self._name = name

    def value(self, step: int) -> float:
        """Return the raw (unvalidated) rate at ``step``."""
        return self._fn(step)

    def __call__(self, step: int) -> float:
        """Return the validated drop probability at ``step``.

        Raises:
            TypeError: If ``step`` is not an int or the rate is not a number.
            ValueError: If ``step < 0`` or the rate is NaN or outside ``[0, 1)``.
        """
        step = check_step(self._name, step)
        return check_p(f"{self._name} at step {step}", self.value(step))

    def __repr__(self) -> str:
        return self._name

    def __mul__(self, factor: float) -> Schedule:
        return scale(self, factor)

    __rmul__ = __mul__


def as_schedule(fn: ScheduleLike, name: str | None = None) -> Schedule:
    """Wrap a number or any callable ``step -> p`` as a validated schedule.

    Args:
        fn: A constant rate, a :class:`Schedule` (returned as is) or a callable.
        name: Text for ``repr``; defaults to the function's name.

    Returns:
        A :class:`Schedule` that validates steps and rates.

    Raises:
        TypeError: If ``fn`` is neither a number nor callable.

    Example:
        >>> s = as_schedule(lambda step: 0.1 if step < 10 else 0.0, name="two-phase")
        >>> s(3), s(10)
        (0.1, 0.0)
    """
    if isinstance(fn, Schedule):
        return fn
    if isinstance(fn, numbers.Real) and not isinstance(fn, bool):
        return constant(float(fn))
    if not callable(fn):
        raise _fail(
            TypeError,
            "as_schedule",
            "a callable step -> p or a float",
            type(fn).__name__,
            "Pass e.g. dropkit.schedules.cosine(0.5, 0.0, steps=1000) or lambda step: 0.1.",
        )
    label = name or f"schedule({getattr(fn, '__qualname__', type(fn).__name__)})"
    return Schedule(fn, label)


def constant(p: float) -> Schedule:
    """The same rate at every step.

    Example:
        >>> constant(0.1)(500)
        0.1
    """
    p = check_p("constant", p)
    return Schedule(lambda step: p, f"constant({_fmt(p)})")


def _span(caller: str, steps: object) -> int:
    return check_int(caller, steps, "steps", minimum=1)


def linear(start: float, end: float, steps: int) -> Schedule:
    """Move linearly from ``start`` at step 0 to ``end`` at ``steps``, then hold.

    Example:
        >>> s = linear(0.5, 0.0, steps=10)
        >>> s(0), s(5), s(20)
        (0.5, 0.25, 0.0)
    """
    start, end = check_p("linear", start, name="start"), check_p("linear", end, name="end")
    steps = _span("linear", steps)

    def fn(step: int) -> float:
        return lerp(start, end, min(step / steps, 1.0))

    return Schedule(fn, f"linear({_fmt(start)} -> {_fmt(end)}, steps={steps})")


def cosine(start: float, end: float = 0.0, steps: int = 1) -> Schedule:
    """Half-cosine from ``start`` to ``end`` over ``steps``, then hold ``end``.

    ``p(t) = end + (start - end) * (1 + cos(pi * t / steps)) / 2``. Decaying
    from a high rate (e.g. 0.5) toward 0 regularises strongly early and lets
    the model fit late; swap the ends for a rising curve.

    Example:
        >>> s = cosine(0.5, 0.0, steps=100)
        >>> s(0), round(s(50), 6), s(100)
        (0.5, 0.25, 0.0)
    """
    start, end = check_p("cosine", start, name="start"), check_p("cosine", end, name="end")
    steps = _span("cosine", steps)

    def fn(step: int) -> float:
        t = min(step / steps, 1.0)
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))

    return Schedule(fn, f"cosine({_fmt(start)} -> {_fmt(end)}, steps={steps})")


def warmup(p: float, steps: int) -> Schedule:
    """Raise the rate linearly from 0 to ``p`` over ``steps``, then hold ``p``.

    Example:
        >>> s = warmup(0.2, steps=4)
        >>> s(0), s(2), s(9)
        (0.0, 0.1, 0.2)
    """
    p = check_p("warmup", p)
    steps = _span("warmup", steps)
    return Schedule(
        lambda step: p * min(step / steps, 1.0), f"warmup(0 -> {_fmt(p)}, steps={steps})"
    )


def curriculum(p: float, gamma: float) -> Schedule:
    """Curriculum dropout: ``p(t) = p * (1 - exp(-gamma * t))`` (Morerio et al.).

    Starts at 0 and approaches ``p``; ``1 / gamma`` steps reach ~63% of it.

    Raises:
        ValueError: If ``gamma`` is not a positive finite number.

    Example:
        >>> s = curriculum(0.5, gamma=0.01)
        >>> s(0), round(s(100), 4)
        (0.0, 0.3161)
    """
    p = check_p("curriculum", p)
    if not isinstance(gamma, numbers.Real) or not (0 < float(gamma) < math.inf):
        raise _fail(
            ValueError,
            "curriculum",
            "gamma > 0",
            gamma,
            "Pass the inverse of the ramp length in steps, e.g. 1e-3.",
        )
    g = float(gamma)
    return Schedule(
        lambda step: p * -math.expm1(-g * step), f"curriculum(0 -> {_fmt(p)}, gamma={_fmt(g)})"
    )


def early(p: float, until: int) -> Schedule:
    """Early dropout: ``p`` for steps ``< until``, then 0 (Liu et al., 2023).

    Dropout only during the first part of training reduces the variance of
    mini-batch gradients and helps models that underfit.

    Example:
        >>> s = early(0.1, until=100)
        >>> s(99), s(100)
        (0.1, 0.0)
    """
    p = check_p("early", p)
    until = check_int("early", until, "until", minimum=1)
    return Schedule(lambda step: p if step < until else 0.0, f"early({_fmt(p)}, until={until})")


def late(p: float, start: int) -> Schedule:
    """Late dropout: 0 for steps ``< start``, then ``p`` (Liu et al., 2023).

    Example:
        >>> s = late(0.1, start=100)
        >>> s(99), s(100)
        (0.0, 0.1)
    """
    p = check_p("late", p)
    start = check_int("late", start, "start", minimum=0)
    return Schedule(lambda step: 0.0 if step < start else p, f"late({_fmt(p)}, start={start})")


def _check_boundaries(caller: str, boundaries: Sequence[object], count: int) -> list[int]:
    bounds = [check_int(caller, b, "boundary", minimum=1) for b in boundaries]
    if len(bounds) != count or any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise _fail(
            ValueError,
            caller,
            f"{count} strictly increasing boundaries (one fewer than the pieces)",
            list(boundaries),
            "Pass boundaries like [100, 500] for three pieces.",
        )
    return bounds


def piecewise(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """Constant pieces: ``values[i]`` on ``[boundaries[i-1], boundaries[i])``.

    Example:
        >>> s = piecewise([10, 20], [0.0, 0.3, 0.0])   # off, on, off
        >>> s(5), s(10), s(25)
        (0.0, 0.3, 0.0)
    """
    ps = [check_p("piecewise", v, name="values[i]") for v in values]
    bounds = _check_boundaries("piecewise", boundaries, len(ps) - 1)

    def fn(step: int) -> float:
        return ps[sum(step >= b for b in bounds)]

    text = ", ".join(_fmt(v) for v in ps)
    return Schedule(fn, f"piecewise({bounds}, [{text}])")


def sequence(schedules: Sequence[ScheduleLike], boundaries: Sequence[int]) -> Schedule:
    """Run schedules one after another; each restarts its own step count at 0.

    Schedule ``i`` covers ``[boundaries[i-1], boundaries[i])`` and is called
    with ``step - boundaries[i-1]``.

    Example:
        >>> s = sequence([warmup(0.3, 10), cosine(0.3, 0.0, 90)], boundaries=[10])
        >>> s(5), s(10), s(100)
        (0.15, 0.3, 0.0)
    """
    parts = [as_schedule(s) for s in schedules]
    if not parts:
        raise _fail(
            ValueError, "sequence", "at least one schedule", [], "Pass a list of schedules."
        )
    bounds = _check_boundaries("sequence", boundaries, len(parts) - 1)
    starts = [0, *bounds]

    def fn(step: int) -> float:
        i = sum(step >= b for b in bounds)
        return parts[i](step - starts[i])

    return Schedule(fn, f"sequence([{', '.join(map(repr, parts))}], boundaries={bounds})")


def scale(schedule: ScheduleLike, factor: float) -> Schedule:
    """Multiply a schedule by a non-negative factor (result still validated).

    Example:
        >>> scale(constant(0.2), 0.5)(0)
        0.1
    """
    inner = as_schedule(schedule)
    if not isinstance(factor, numbers.Real) or not (0 <= float(factor) < math.inf):
        raise _fail(ValueError, "scale", "factor >= 0", factor, "Pass a finite factor such as 0.5.")
    f = float(factor)
    return Schedule(lambda step: inner(step) * f, f"{_fmt(f)} * {inner!r}")


def clip(schedule: ScheduleLike, low: float = 0.0, high: float = 0.99) -> Schedule:
    """Bound a schedule to ``[low, high]``.

    Raises:
        ValueError: If ``low > high`` or either is not a probability.

    Example:
        >>> clip(linear(0.0, 0.6, steps=10), high=0.3)(10)
        0.3
    """
    inner = as_schedule(schedule)
    lo, hi = check_p("clip", low, name="low"), check_p("clip", high, name="high")
    if lo > hi:
        raise _fail(ValueError, "clip", f"low <= high={hi}", lo, "Swap low and high.")
    return Schedule(
        lambda step: min(max(inner(step), lo), hi), f"clip({inner!r}, {_fmt(lo)}, {_fmt(hi)})"
    )


def _combine(caller: str, op: Callable[..., float], schedules: Sequence[ScheduleLike]) -> Schedule:
    parts = [as_schedule(s) for s in schedules]
    if not parts:
        raise _fail(ValueError, caller, "at least one schedule", [], "Pass one or more schedules.")
    return Schedule(
        lambda step: op(s(step) for s in parts), f"{caller}({', '.join(map(repr, parts))})"
    )


def minimum(*schedules: ScheduleLike) -> Schedule:
    """Pointwise minimum of schedules (numbers count as constants).

    Example:
        >>> minimum(linear(0.0, 0.6, steps=10), 0.2)(10)
        0.2
    """
    return _combine("minimum", min, schedules)


def maximum(*schedules: ScheduleLike) -> Schedule:
    """Pointwise maximum of schedules (numbers count as constants).

    Example:
        >>> maximum(cosine(0.5, 0.0, steps=10), 0.05)(10)
        0.05
    """
    return _combine("maximum", max, schedules)

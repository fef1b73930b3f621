"""Two-line integration of a :class:`DropoutScheduler` with a plain training loop.

Either call ``scheduler.step(step)`` yourself at the top of each step, or let
:func:`steps` / :func:`scheduled` do it::

    for step in dropkit.training.steps(scheduler, range(start, total)):
        train_one_step(step)

References:
    Morerio et al., "Curriculum Dropout", ICCV 2017.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from dropkit.schedules.time import check_step
from dropkit.training.scheduler import DropoutScheduler

__all__ = ["scheduled", "steps"]

T = TypeVar("T")


def steps(scheduler: DropoutScheduler, step_numbers: Iterable[int]) -> Iterator[int]:
    """Yield each step after applying its rate with ``scheduler.step(step)``.

    Args:
        scheduler: The scheduler driving the model.
        step_numbers: The steps to run, e.g. ``range(resume_step, total)``.

    Yields:
        Each step, with the model's rates already set for it.

    Raises:
        ValueError: If a step is negative or the schedule returns a bad rate.

    Example:
        >>> import torch.nn as nn, dropkit
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0))
        >>> sched = DropoutScheduler(net, dropkit.schedules.early(0.2, until=2))
        >>> [(step, net[1].p) for step in steps(sched, range(3))]
        [(0, 0.2), (1, 0.2), (2, 0.0)]
    """
    for step in step_numbers:
        scheduler.step(step)
        yield step


def scheduled(
    scheduler: DropoutScheduler, batches: Iterable[T], *, start: int = 0
) -> Iterator[tuple[int, T]]:
    """Yield ``(step, batch)`` pairs, numbering from ``start``, rates applied.

    Use ``start`` to resume: pass the number of steps already taken.

    Args:
        scheduler: The scheduler driving the model.
        batches: Any iterable of batches (a DataLoader).
        start: Step number of the first batch.

    Yields:
        ``(step, batch)`` with the model's rates set for ``step``.

    Example:
        >>> import torch.nn as nn, dropkit
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0))
        >>> sched = DropoutScheduler(net, dropkit.schedules.linear(0.4, 0.0, steps=4))
        >>> [(step, net[1].p) for step, _ in scheduled(sched, "ab", start=2)]
        [(2, 0.2), (3, 0.1)]
    """
    step = check_step("scheduled", start)
    for batch in batches:
        scheduler.step(step)
        yield step, batch
        step += 1

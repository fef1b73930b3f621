"""Apply a dropout schedule (and a depth profile) to any model, step by step.

:class:`DropoutScheduler` evaluates ``schedule(step)`` and writes the rate
into the live model through :func:`dropkit.set_dropout`, which reaches every
site kind (modules, attention rates read by fused attention, float rate
attributes) and keeps a Hugging Face ``config`` in sync. The step is always
passed explicitly, so the rates are a pure function of the step and a
resumed run continues exactly where it stopped.

References:
    Morerio et al., "Curriculum Dropout", ICCV 2017.
    Liu et al., "Dropout Reduces Underfitting", ICML 2023.
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from dropkit._validation import _fail, check_module
from dropkit.schedules.depth import DepthProfile, depth_profile
from dropkit.schedules.time import Schedule, as_schedule, check_step
from dropkit.sites import find_dropout, set_dropout
from dropkit.sites.select import SiteSelector, Where, check_sites, resolve_aliases

__all__ = ["DropoutScheduler"]


class DropoutScheduler:
    """Drive a model's dropout rates from a schedule ``step -> p``.

    Each :meth:`step` call computes ``p = schedule(step)`` (validated), then
    calls ``dropkit.set_dropout(model, p, sites=sites)`` -- only
    when ``p`` differs from the rate it last wrote (pass ``force=True`` after
    changing rates by other means), since a rewrite walks every site of the
    model and every dropout field of its config. Warnings from ``set_dropout`` (say, a
    Hugging Face config field that cannot express per-depth rates) are shown
    on the first write only, not at every step. With a
    ``depth_profile``, site ``s`` at depth fraction ``d`` gets
    ``p * depth_profile(d)`` instead (the profile is a multiplier in
    ``[0, 1]``, so ``linear_depth(1.0)`` gives the deepest block the full
    scheduled rate). A bad rate raises before the model is touched.

    Args:
        model: Any module.
        schedule: A schedule from :mod:`dropkit.schedules`, any callable
            ``step -> p``, or a constant float.
        sites: Which sites to drive (None: all), as everywhere in dropkit
            (:mod:`dropkit.sites.select`): a kind (``"attention"``),
            ``"head"``, ``"last:k"`` / ``"blocks:i-j"``, a glob over paths, a
            compiled regex, a predicate on the site, a ``DropoutSite``, or a
            list of those (their union).
        depth_profile: Optional callable ``depth_fraction -> multiplier``.
        kinds: Deprecated alias: only sites of these kinds; use ``sites=``.
        where: Deprecated alias: only sites matching this glob, regex or
            predicate (with ``kinds``: both); use ``sites=``.

    Raises:
        TypeError: If ``sites`` has a wrong type or is given with ``kinds`` /
            ``where``.
        ValueError: If a ``"last:k"`` / ``"blocks:i-j"`` selector is malformed.

    Warns:
        DeprecationWarning: If ``kinds`` or ``where`` is passed.

    Example:
        >>> import dropkit
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        >>> scheduler = DropoutScheduler(net, dropkit.schedules.linear(0.4, 0.0, steps=4))
        >>> scheduler.step(2), net[1].p
        (0.2, 0.2)
        >>> scheduler.state_dict()["step"]
        2
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Callable[[int], Any] | float,
        *,
        sites: SiteSelector | None = None,
        depth_profile: Callable[[float], Any] | None = None,
        kinds: str | Iterable[str] | None = None,
        where: Where | None = None,
    ) -> None:
        self.model = check_module("DropoutScheduler", model)
        self.schedule: Schedule = as_schedule(schedule)
        # fail here, not at the first step
        self.sites = resolve_aliases("DropoutScheduler", sites, kinds, where)
        check_sites("DropoutScheduler", self.sites)
        self.depth_profile: DepthProfile | None = (
            None if depth_profile is None else _as_profile(depth_profile)
        )
        self.last_step: int | None = None
        self.current_p: float | None = None
        self._warned = False

    def rate(self, step: int) -> float:
        """Return the scheduled rate at ``step`` without touching the model."""
        return self.schedule(check_step("DropoutScheduler.step", step))

    def step(self, step: int, *, force: bool = False) -> float:
        """Apply the rate for ``step`` to the model and return it.

        Args:
            step: The training step (optimizer steps taken so far), ``>= 0``.
            force: Write the rate even if it equals the one last written.

        Returns:
            The scheduled rate (before the depth profile).

        Raises:
            TypeError: If ``step`` is not an int.
            ValueError: If ``step < 0`` or the schedule or profile returns a
                rate outside ``[0, 1)``; the model is unchanged.
        """
        p = self.rate(step)
        if force or p != self.current_p:
            self._apply(p)
        self.last_step, self.current_p = int(step), p
        return p

    def _apply(self, p: float) -> None:
        # set_dropout's warnings (no site selected; a config field that cannot
        # hold per-depth rates) would repeat at every step: show them once.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._set(p)
        if not self._warned:
            self._warned = True
            for item in caught:
                warnings.warn(item.message, stacklevel=3)

    def _set(self, p: float) -> None:
        profile = self.depth_profile
        if profile is None:
            set_dropout(self.model, p, sites=self.sites)
            return
        # Evaluate (and validate) the profile on every depth before writing, so a
        # bad profile fails with the model untouched.
        fractions = {s.depth_fraction for s in find_dropout(self.model)}
        rates = {d: _checked_rate(p, profile, d) for d in fractions}
        set_dropout(
            self.model,
            lambda site, d: rates[d] if d in rates else _checked_rate(p, profile, d),
            sites=self.sites,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the step and rate last applied, and the schedule's description."""
        return {"step": self.last_step, "p": self.current_p, "schedule": repr(self.schedule)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` and re-apply that step's rate.

        Re-applying makes a freshly built model carry the rates it had when the
        state was saved; the next :meth:`step` call continues the schedule.

        Raises:
            ValueError: If ``state`` lacks a ``"step"`` entry.

        Warns:
            UserWarning: If the saved schedule differs from this one.
        """
        if not isinstance(state, dict) or "step" not in state:
            raise _fail(
                ValueError,
                "DropoutScheduler.load_state_dict",
                "a dict with a 'step' entry",
                state,
                "Pass what DropoutScheduler.state_dict() returned.",
            )
        saved = state.get("schedule")
        if saved is not None and saved != repr(self.schedule):
            warnings.warn(
                f"DropoutScheduler.load_state_dict: the state was saved with schedule {saved}, "
                f"but this scheduler runs {self.schedule!r}; continuing with the current one.",
                UserWarning,
                stacklevel=2,
            )
        if state["step"] is None:
            self.last_step, self.current_p = None, None
            return
        self.step(state["step"], force=True)

    def __repr__(self) -> str:
        extra = f", depth_profile={self.depth_profile!r}" if self.depth_profile else ""
        return f"DropoutScheduler({self.schedule!r}{extra}, step={self.last_step})"


def _as_profile(fn: Callable[[float], Any]) -> DepthProfile:
    return depth_profile(fn)


def _checked_rate(p: float, profile: DepthProfile, d: float) -> float:
    from dropkit._validation import check_p

    return check_p(f"DropoutScheduler at depth {d:g}", p * profile(d))

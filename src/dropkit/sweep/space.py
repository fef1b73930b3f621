"""The search space of a dropout sweep and how a trial's values become rates.

A trial draws a global rate ``p``, optionally one rate per site kind, a depth
profile (constant, or rising / falling linearly with depth as in the
stochastic-depth rule of Huang et al. 2016), a weight decay and a rate
schedule over training (constant, or a linear warm-up from 0 as in curriculum
dropout, Morerio et al. 2017). :func:`site_rate` turns those values into the
rate of one site at one point of training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dropkit._validation import check_choice, check_p
from dropkit.sites import KINDS

if TYPE_CHECKING:
    import optuna

PROFILES = ("constant", "increasing", "decreasing")
SCHEDULES = ("constant", "warmup")
_WHERE = "SearchSpace"


@dataclass(frozen=True)
class SearchSpace:
    """Ranges searched by a dropout study.

    Attributes:
        p: Range of the global drop rate (uniform).
        kinds: Site kinds that get their own rate ``p_<kind>`` in the same range
            (e.g. ``("element", "attention")``); empty means one global rate.
        profiles: Depth profiles to choose from (:data:`PROFILES`).
        weight_decay: Log-uniform range of the weight decay, or ``None`` to keep
            the task's own.
        schedules: Rate schedules to choose from (:data:`SCHEDULES`).
        warmup: Range of the warm-up length as a fraction of training.
    """

    p: tuple[float, float] = (0.0, 0.5)
    kinds: tuple[str, ...] = ()
    profiles: tuple[str, ...] = PROFILES
    weight_decay: tuple[float, float] | None = (1e-6, 1e-2)
    schedules: tuple[str, ...] = SCHEDULES
    warmup: tuple[float, float] = (0.05, 0.5)

    def __post_init__(self) -> None:
        lo, hi = (check_p(_WHERE, v, name="p range") for v in self.p)
        if lo > hi:
            raise ValueError(
                f"{_WHERE}: expected p range low <= high, but got {self.p!r}. Swap the bounds."
            )
        for kind in self.kinds:
            check_choice(_WHERE, kind, "kind", KINDS)
        for profile in self.profiles:
            check_choice(_WHERE, profile, "profile", PROFILES)
        for schedule in self.schedules:
            check_choice(_WHERE, schedule, "schedule", SCHEDULES)
        if not self.profiles or not self.schedules:
            raise ValueError(
                f"{_WHERE}: expected at least one profile and one schedule, but got "
                f"{(self.profiles, self.schedules)!r}. Leave the defaults or name one."
            )
        if self.weight_decay is not None and not 0 < self.weight_decay[0] <= self.weight_decay[1]:
            raise ValueError(
                f"{_WHERE}: expected 0 < low <= high for weight_decay, but got "
                f"{self.weight_decay!r}. Pass e.g. (1e-6, 1e-2) or None."
            )

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw one configuration from an ``optuna.Trial``."""
        params: dict[str, Any] = {"p": trial.suggest_float("p", *self.p)}
        for kind in self.kinds:
            params[f"p_{kind}"] = trial.suggest_float(f"p_{kind}", *self.p)
        params["profile"] = trial.suggest_categorical("profile", list(self.profiles))
        if self.weight_decay is not None:
            params["weight_decay"] = trial.suggest_float(
                "weight_decay", *self.weight_decay, log=True
            )
        params["schedule"] = trial.suggest_categorical("schedule", list(self.schedules))
        if params["schedule"] == "warmup":
            params["warmup"] = trial.suggest_float("warmup", *self.warmup)
        return params


def space_for(task: object, p: tuple[float, float] = (0.0, 0.5)) -> SearchSpace:
    """The default search space of a task, from its optional attributes.

    ``kinds`` (per-kind rates when it names more than one), ``profiles``,
    ``schedules`` and ``weight_decay`` (a range, or ``None``) narrow the
    space to what the task can use.
    """
    kinds = tuple(getattr(task, "kinds", ()))
    return SearchSpace(
        p=p,
        kinds=kinds if len(kinds) > 1 else (),
        profiles=tuple(getattr(task, "profiles", PROFILES)),
        schedules=tuple(getattr(task, "schedules", SCHEDULES)),
        weight_decay=getattr(task, "weight_decay", (1e-6, 1e-2)),
    )


def site_rate(params: dict[str, Any], kind: str, depth: float, progress: float = 1.0) -> float:
    """Rate of one site under a trial's parameters.

    Args:
        params: Values from :meth:`SearchSpace.suggest`.
        kind: The site's kind; ``p_<kind>`` overrides the global ``p``.
        depth: Depth fraction in ``[0, 1]`` (0 nearest the input).
        progress: Fraction of training done, in ``[0, 1]``.

    Returns:
        ``base * profile(depth) * schedule(progress)``, where ``increasing`` is
        ``depth``, ``decreasing`` is ``1 - depth`` and ``warmup`` ramps linearly
        from 0 to 1 over the first ``warmup`` fraction of training.

    Example:
        >>> site_rate({"p": 0.4, "profile": "increasing", "schedule": "constant"}, "element", 0.5)
        0.2
    """
    from dropkit.schedules import constant_depth, linear_depth

    base = float(params.get(f"p_{kind}", params["p"]))
    profile = params.get("profile", "constant")
    if profile == "constant":
        rate = constant_depth(base)(depth)
    else:
        rate = linear_depth(base)(depth if profile == "increasing" else 1.0 - depth)
    if params.get("schedule") == "warmup":
        rate *= min(progress / max(float(params["warmup"]), 1e-12), 1.0)
    return rate

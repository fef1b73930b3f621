"""A Hugging Face ``Trainer`` callback that schedules dropout and watches overfitting.

At ``on_step_begin`` the callback applies ``schedule(state.global_step)`` to
the model through :class:`~dropkit.training.DropoutScheduler` (every site
kind, config kept in sync), and at ``on_log`` it adds the rate under
``dropout_p`` to the Trainer's logs and ``state.log_history``. With an
:class:`~dropkit.training.OverfitMonitor`, every evaluation feeds the last
logged training loss and ``eval_loss`` to the monitor, keeps the verdicts,
and stops training when the monitor says so.

Resuming is exact: the rate is a pure function of ``state.global_step``,
which the Trainer restores from the checkpoint, and the monitor is rebuilt by
replaying the restored ``log_history``.

:meth:`DropoutCallback.over_training` builds the schedule from the Trainer's
own length: a run of ``max_steps`` steps applies the rates of steps ``0`` to
``max_steps - 1``, so a schedule built with ``steps=max_steps`` never reaches
its end value (a cosine from 0.3 to 0.1 over 6 steps ends at 0.1051). The
callback builds it with ``steps=max_steps - 1``, so the last step trains at
the end value exactly.

References:
    Liu et al., "Dropout Reduces Underfitting", ICML 2023.
    Prechelt, "Early Stopping - But When?", 1998.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dropkit._optional import require
from dropkit.schedules import as_schedule
from dropkit.sites.select import SiteSelector, Where, check_sites, resolve_aliases
from dropkit.training.monitor import OverfitMonitor, Verdict, check_monitor
from dropkit.training.scheduler import DropoutScheduler

_transformers = require("transformers", "hf", "dropkit.integrations.hf.DropoutCallback")
_TrainerCallback: Any = _transformers.TrainerCallback


def _loss_pairs(
    history: Iterable[dict[str, Any]], metric: str
) -> Iterator[tuple[float, float, float | None]]:
    """Yield ``(train_loss, val_loss, dropout_p)`` for each evaluation in a log history."""
    train = None
    for entry in history:
        if "loss" in entry:
            train = entry["loss"]
        if metric in entry and train is not None:
            yield train, entry[metric], entry.get("dropout_p")


class DropoutCallback(_TrainerCallback):
    """Schedule dropout in a ``transformers.Trainer`` and log the rate.

    Args:
        schedule: A schedule from :mod:`dropkit.schedules`, any callable
            ``step -> p``, or a constant float.
        monitor: Optional :class:`~dropkit.training.OverfitMonitor` fed at each
            evaluation (needs ``eval_strategy`` and training-loss logging).
        kinds: Deprecated alias: only sites of these kinds; use ``sites=``.
        where: Deprecated alias: only sites matching this glob, regex or
            predicate (with ``kinds``: both); use ``sites=``.
        depth_profile: Optional multiplier by depth fraction.
        sites: Which sites to drive (None: all), as in
            :class:`~dropkit.training.DropoutScheduler`: a kind, ``"head"``, a
            glob over paths, a regex, a predicate, sites, or a list of those.
        log_key: Name of the logged rate.
        metric: Evaluation metric given to the monitor as the validation loss.
        early_stop: Stop training when the monitor's verdict says ``stop``.

    The logged ``dropout_p`` of a training log is the rate used by the step
    just taken, ``schedule(global_step - 1)``. The Trainer calls its
    ``report_to`` integrations before user callbacks, so they do not see
    ``dropout_p``; ``state.log_history`` and later callbacks do.

    Attributes:
        scheduler: The :class:`DropoutScheduler`, built at ``on_train_begin``.
        verdicts: The monitor's verdicts, one per evaluation of this run.

    Example:
        >>> import dropkit
        >>> from dropkit.integrations.hf import DropoutCallback
        >>> callback = DropoutCallback(dropkit.schedules.cosine(0.3, 0.0, steps=1000))
        >>> # or let the Trainer's max_steps set the length (last step at 0.1 exactly):
        >>> callback = DropoutCallback.over_training(dropkit.schedules.cosine, 0.3, 0.1)
        >>> # Trainer(model, args, train_dataset=..., callbacks=[callback]).train()
    """

    def __init__(
        self,
        schedule: Callable[[int], Any] | float,
        monitor: OverfitMonitor | None = None,
        kinds: str | Iterable[str] | None = None,
        where: Where | None = None,
        depth_profile: Callable[[float], Any] | None = None,
        *,
        sites: SiteSelector | None = None,
        log_key: str = "dropout_p",
        metric: str = "eval_loss",
        early_stop: bool = True,
    ) -> None:
        self.schedule = as_schedule(schedule)
        self.monitor = check_monitor("DropoutCallback", monitor)
        self.sites = resolve_aliases("DropoutCallback", sites, kinds, where)
        check_sites("DropoutCallback", self.sites)
        self.depth_profile = depth_profile
        self.log_key = log_key
        self.metric = metric
        self.early_stop = early_stop
        self.scheduler: DropoutScheduler | None = None
        self.verdicts: list[Verdict] = []
        self._factory: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None

    @classmethod
    def over_training(
        cls,
        factory: Callable[..., Any],
        *args: Any,
        monitor: OverfitMonitor | None = None,
        kinds: str | Iterable[str] | None = None,
        where: Where | None = None,
        depth_profile: Callable[[float], Any] | None = None,
        sites: SiteSelector | None = None,
        log_key: str = "dropout_p",
        metric: str = "eval_loss",
        early_stop: bool = True,
        **kwargs: Any,
    ) -> DropoutCallback:
        """A callback whose schedule spans the whole run, length from ``TrainerState``.

        At ``on_train_begin`` the schedule is built as
        ``factory(*args, steps=max(state.max_steps - 1, 1), **kwargs)``, so
        the first step trains at the start value and the last one
        (``global_step = max_steps - 1``) at the end value.

        Args:
            factory: A schedule builder taking ``steps``, e.g.
                :func:`dropkit.schedules.cosine`, ``linear`` or ``warmup``.
            *args: Its positional arguments (start and end rates).
            monitor: See the class.
            kinds: See the class.
            where: See the class.
            depth_profile: See the class.
            sites: See the class.
            log_key: See the class.
            metric: See the class.
            early_stop: See the class.
            **kwargs: Its other keyword arguments (not ``steps``).

        Returns:
            The callback.

        Raises:
            TypeError: If ``factory`` is not callable or ``steps`` is given.

        Example:
            >>> import dropkit
            >>> from dropkit.integrations.hf import DropoutCallback
            >>> cb = DropoutCallback.over_training(dropkit.schedules.linear, 0.3, 0.0)
        """
        if not callable(factory):
            raise TypeError(
                f"DropoutCallback.over_training: expected a schedule builder such as "
                f"dropkit.schedules.cosine, but got {factory!r}. Pass the function itself."
            )
        if "steps" in kwargs:
            raise TypeError(
                f"DropoutCallback.over_training: expected no steps= (it comes from the "
                f"Trainer's max_steps), but got steps={kwargs['steps']!r}. Leave it out, or "
                "use DropoutCallback(schedule) for a fixed length."
            )
        sites = resolve_aliases("DropoutCallback.over_training", sites, kinds, where)
        callback = cls(
            0.0,
            monitor=monitor,
            depth_profile=depth_profile,
            sites=sites,
            log_key=log_key,
            metric=metric,
            early_stop=early_stop,
        )
        callback._factory = (factory, args, dict(kwargs))
        return callback

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Bind to the model, apply the rate of the current step, rebuild the monitor."""
        model = kwargs.get("model")
        if model is None:
            raise RuntimeError(
                "DropoutCallback: expected the Trainer to pass its model to on_train_begin, "
                "but got None. Add the callback to a transformers.Trainer."
            )
        if self._factory is not None:
            max_steps = getattr(state, "max_steps", 0)
            if not isinstance(max_steps, int) or max_steps < 1:
                raise RuntimeError(
                    "DropoutCallback.over_training: expected TrainerState.max_steps >= 1 at "
                    f"on_train_begin, but got {max_steps!r}. Set max_steps or num_train_epochs "
                    "with a sized dataset, or pass a schedule with its own steps."
                )
            factory, args_, kw = self._factory
            self.schedule = as_schedule(factory(*args_, steps=max(max_steps - 1, 1), **kw))
        self.scheduler = DropoutScheduler(
            model,
            self.schedule,
            sites=self.sites,
            depth_profile=self.depth_profile,
        )
        self.scheduler.step(state.global_step, force=True)
        self.verdicts = []
        if self.monitor is not None:
            self.monitor.reset()
            for train, val, p in _loss_pairs(state.log_history, self.metric):
                self.monitor.update(train, val, p=p)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Apply ``schedule(state.global_step)`` before the step's forward pass."""
        if self.scheduler is not None:
            self.scheduler.step(state.global_step)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Add the rate used by the last step to the logs and the log history."""
        if self.scheduler is None or self.scheduler.current_p is None or logs is None:
            return
        p = self.scheduler.current_p
        logs[self.log_key] = p
        # Trainer.log appends a copy of ``logs`` to the history before calling
        # on_log; add the rate to that copy too.
        last = state.log_history[-1] if state.log_history else None
        if isinstance(last, dict) and all(
            last.get(k) is v for k, v in logs.items() if k != self.log_key
        ):
            last[self.log_key] = p

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Feed the last training loss and the evaluation loss to the monitor."""
        if self.monitor is None or not metrics or self.metric not in metrics:
            return
        # Feed every evaluation the monitor has not seen yet (normally just this one).
        pairs = list(_loss_pairs(state.log_history, self.metric))
        p = self.scheduler.current_p if self.scheduler is not None else None
        for train, val, _ in pairs[len(self.monitor.history) :]:
            verdict = self.monitor.update(
                train, val, p=p, weight_decay=getattr(args, "weight_decay", None)
            )
            self.verdicts.append(verdict)
            if verdict.stop and self.early_stop:
                control.should_training_stop = True

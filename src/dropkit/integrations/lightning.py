"""A Lightning callback that schedules dropout and watches overfitting.

At ``on_train_batch_start`` the callback applies
``schedule(trainer.global_step)`` to the ``LightningModule`` through
:class:`~dropkit.training.DropoutScheduler` and logs it with
``pl_module.log("dropout_p", ...)``. With an
:class:`~dropkit.training.OverfitMonitor`, each epoch that ran validation
feeds the epoch's training and validation losses (``train_loss`` /
``val_loss`` by default, as logged by the module) to the monitor and stops
training when the verdict says so.

Resuming from a checkpoint (``trainer.fit(..., ckpt_path=...)``) continues
the schedule at the restored ``global_step``; the monitor's history travels
in the checkpoint through :meth:`DropoutCallback.state_dict`.

References:
    Liu et al., "Dropout Reduces Underfitting", ICML 2023.
    Prechelt, "Early Stopping - But When?", 1998.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dropkit._optional import require
from dropkit.schedules import as_schedule
from dropkit.sites.select import SiteSelector, Where, check_sites, resolve_aliases
from dropkit.training.monitor import OverfitMonitor, Verdict, check_monitor
from dropkit.training.scheduler import DropoutScheduler

_pl = require("lightning.pytorch", "lightning", "dropkit.integrations.lightning")
_Callback: Any = _pl.Callback

__all__ = ["DropoutCallback"]


class DropoutCallback(_Callback):
    """Schedule dropout in a ``lightning.pytorch.Trainer`` and log the rate.

    Args:
        schedule: A schedule from :mod:`dropkit.schedules`, any callable
            ``step -> p``, or a constant float.
        monitor: Optional :class:`~dropkit.training.OverfitMonitor`.
        kinds: Deprecated alias: only sites of these kinds; use ``sites=``.
        where: Deprecated alias: only sites matching this glob, regex or
            predicate (with ``kinds``: both); use ``sites=``.
        depth_profile: Optional multiplier by depth fraction.
        sites: Which sites to drive (None: all), as in
            :class:`~dropkit.training.DropoutScheduler`: a kind, ``"head"``, a
            glob over paths, a regex, a predicate, sites, or a list of those.
        log_key: Name of the logged rate.
        train_loss_key: Epoch-level training loss in ``trainer.callback_metrics``.
        val_loss_key: Validation loss in ``trainer.callback_metrics``.
        early_stop: Stop training when the monitor's verdict says ``stop``.

    Attributes:
        scheduler: The :class:`DropoutScheduler`, built at ``on_train_start``.
        verdicts: The monitor's verdicts, one per validated epoch of this run.

    Example:
        >>> import dropkit
        >>> from dropkit.integrations.lightning import DropoutCallback
        >>> callback = DropoutCallback(dropkit.schedules.early(0.1, until=500))
        >>> # lightning.pytorch.Trainer(callbacks=[callback]).fit(module, loader)
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
        train_loss_key: str = "train_loss",
        val_loss_key: str = "val_loss",
        early_stop: bool = True,
    ) -> None:
        super().__init__()
        self.schedule = as_schedule(schedule)
        self.monitor = check_monitor("DropoutCallback", monitor)
        self.sites = resolve_aliases("DropoutCallback", sites, kinds, where)
        check_sites("DropoutCallback", self.sites)
        self.depth_profile = depth_profile
        self.log_key = log_key
        self.train_loss_key = train_loss_key
        self.val_loss_key = val_loss_key
        from dropkit._validation import check_bool

        self.early_stop = check_bool("DropoutCallback", early_stop, "early_stop")
        self.scheduler: DropoutScheduler | None = None
        self.verdicts: list[Verdict] = []
        self._val_loss: float | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Bind to the module and apply the rate of the (restored) global step."""
        self.scheduler = DropoutScheduler(
            pl_module,
            self.schedule,
            sites=self.sites,
            depth_profile=self.depth_profile,
        )
        self.scheduler.step(trainer.global_step, force=True)
        self.verdicts = []

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        """Apply ``schedule(trainer.global_step)`` and log it."""
        if self.scheduler is None:
            return
        p = self.scheduler.step(trainer.global_step)
        pl_module.log(self.log_key, p, on_step=True, on_epoch=False, batch_size=1)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Remember the validation loss of this epoch (not of the sanity check)."""
        if self.monitor is None or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.val_loss_key)
        if value is None:
            raise RuntimeError(
                f"DropoutCallback: expected {self.val_loss_key!r} in trainer.callback_metrics, "
                f"but got keys {sorted(trainer.callback_metrics)}. Log it in validation_step "
                "with self.log(...) or pass val_loss_key=."
            )
        self._val_loss = float(value)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Feed the epoch's losses to the monitor when validation ran this epoch."""
        if self.monitor is None or self._val_loss is None:
            return
        value = trainer.callback_metrics.get(self.train_loss_key)
        if value is None:
            raise RuntimeError(
                f"DropoutCallback: expected {self.train_loss_key!r} in trainer.callback_metrics, "
                f"but got keys {sorted(trainer.callback_metrics)}. Log it in training_step with "
                "self.log(..., on_epoch=True) or pass train_loss_key=."
            )
        p = self.scheduler.current_p if self.scheduler is not None else None
        verdict = self.monitor.update(float(value), self._val_loss, p=p)
        self._val_loss = None
        self.verdicts.append(verdict)
        if verdict.stop and self.early_stop:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        """Scheduler position and monitor history, saved in Lightning checkpoints."""
        return {
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "monitor": None if self.monitor is None else self.monitor.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the monitor history; the schedule resumes from ``global_step``."""
        monitor_state = state_dict.get("monitor")
        if self.monitor is not None and monitor_state is not None:
            self.monitor.load_state_dict(monitor_state)

"""Switch dropout on for Monte Carlo inference safely, and warn on a forgotten ``eval()``.

``model.train()`` for MC dropout (Gal & Ghahramani, 2016) also puts BatchNorm in
training mode, so every prediction rewrites its running statistics; and turning
on only the ``nn.Dropout`` modules misses attention dropout that fused attention
reads from the *attention module's* flag (``dropout_p = p if self.training``) or
from a float attribute (Llama's ``attention_dropout``). :func:`mc_mode` flips
exactly the flags that gate the selected sites (the ``gates`` of each
:class:`~dropkit.sites.DropoutSite`), never a norm layer, and neutralises the
other training-only behaviour of a flipped gate module: its other rates are set
to 0 and ``gradient_checkpointing`` is switched off for the duration.

References:
    Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model
    Uncertainty in Deep Learning", ICML 2016.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from dropkit._validation import check_module
from dropkit.sites import KINDS, DropoutSite, _static_sites, match_where

__all__ = ["mc_mode", "MCMode", "guard", "GuardHandle", "DropoutActiveWarning"]

# id(module) -> number of open mc_mode blocks that switched its flag on.
_MC_FLIPPED: Counter[int] = Counter()
_LOCK = threading.Lock()
_ADD_DROPOUT = "Add dropout with dropkit.set_dropout(model, 0.1)."

SiteSpec = str | re.Pattern[str] | DropoutSite | Callable[[DropoutSite], bool]


def select_sites(model: nn.Module, sites: Any, where: str = "mc_mode") -> list[DropoutSite]:
    """Resolve a ``sites`` argument (see :func:`mc_mode`) to a list of sites."""
    found = _static_sites(model)
    if sites is None:
        return found
    specs: Iterable[Any] = (
        [sites] if isinstance(sites, (str, re.Pattern, DropoutSite)) or callable(sites) else sites
    )
    chosen: dict[str, DropoutSite] = {}
    for spec in specs:
        if isinstance(spec, DropoutSite):
            picked = [spec]
        elif spec == "head":
            picked = [s for s in found if _is_head(model, s)]
        elif isinstance(spec, str) and spec in KINDS:
            picked = [s for s in found if s.kind == spec]
        elif isinstance(spec, (str, re.Pattern)) or callable(spec):
            picked = [s for s in found if match_where(spec, s)]
        else:
            raise TypeError(
                f"{where}: expected sites to be None, 'head', a kind, a path pattern, a "
                f"predicate or DropoutSite objects, but got {spec!r}. "
                f"Known kinds: {', '.join(KINDS)}."
            )
        if not picked:
            raise ValueError(
                f"{where}: expected sites entry {spec!r} to select at least one of the "
                f"model's {len(found)} dropout sites, but it selects none. Known kinds: "
                f"{', '.join(KINDS)}; list the sites with dropkit.find_dropout(model)."
            )
        for site in picked:
            chosen.setdefault(site.name, site)
    return list(chosen.values())


def _is_head(model: nn.Module, site: DropoutSite) -> bool:
    from dropkit.integrations.hf import head_paths
    from dropkit.integrations.timm import is_head_path

    heads = head_paths(model)
    if heads is None:
        return is_head_path(site.name)
    return any(site.path == h or site.path.startswith(h + ".") for h in heads)


class MCMode:
    """Handle returned by :func:`mc_mode`: a context manager with ``restore()``.

    Attributes:
        enabled: The stochastic sites switched on (``p > 0``).
    """

    def __init__(self, model: nn.Module, sites: Any = None) -> None:
        check_module("mc_mode", model)
        selected = select_sites(model, sites)
        self.enabled: list[DropoutSite] = [s for s in selected if s.p > 0 and s.gates]
        if not self.enabled:
            raise RuntimeError(
                f"mc_mode: expected at least one dropout site with p > 0, but got "
                f"{len(selected)} selected sites, none stochastic. {_ADD_DROPOUT}"
            )
        self._flags = [(m, m.training) for m in model.modules()]
        self._saved: list[tuple[Any, str, Any]] = []
        self._flipped: list[int] = []
        self._open = True
        try:
            self._switch_on(model)
        except BaseException:
            self._undo()
            raise

    def _switch_on(self, model: nn.Module) -> None:
        chosen = {s.name for s in self.enabled}
        gates: dict[int, nn.Module] = {}
        for site in self.enabled:
            for gate in site.gates:
                gates[id(gate)] = gate
        # Other rates that a flipped gate reads would start dropping too: zero them.
        for site in _static_sites(model):
            if site.name in chosen or site.control == "functional" or not site.gates:
                continue
            if id(site.gates[0]) in gates and site.p > 0 and site.module is not None:
                self._set(site.module, str(site.attr), 0.0)
        for gate in gates.values():
            if getattr(gate, "gradient_checkpointing", False) is True:
                self._set(gate, "gradient_checkpointing", False)
            gate.training = True
        with _LOCK:
            for key in gates:
                _MC_FLIPPED[key] += 1
                self._flipped.append(key)

    def _set(self, obj: Any, attr: str, value: Any) -> None:
        self._saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    def _undo(self) -> None:
        for obj, attr, old in reversed(self._saved):
            setattr(obj, attr, old)
        for module, flag in self._flags:
            module.training = flag
        with _LOCK:
            for key in self._flipped:
                _MC_FLIPPED[key] -= 1
                if _MC_FLIPPED[key] <= 0:
                    del _MC_FLIPPED[key]
        self._saved, self._flipped = [], []

    def restore(self) -> None:
        """Restore every training flag and temporarily zeroed rate (idempotent)."""
        if self._open:
            self._open = False
            self._undo()

    def __enter__(self) -> MCMode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def __repr__(self) -> str:
        state = "open" if self._open else "restored"
        return f"MCMode({len(self.enabled)} sites enabled, {state})"


def mc_mode(model: nn.Module, *, sites: Any = None) -> MCMode:
    """Make only the selected dropout sites drop, keeping everything else in eval.

    Flips the ``training`` flag of each selected site's gates (the dropout module
    and, for fused attention, the attention module that reads the rate) and of
    nothing else: ``model.train()`` is never called, BatchNorm and other norms
    keep their mode and running statistics. A flipped gate module's other rates
    (unselected attribute sites, e.g. BART's ``layerdrop``) are set to 0 and its
    ``gradient_checkpointing`` switched off until restore. On exit (also after an
    exception) every module's previous flag is restored exactly. Blocks nest if
    closed in reverse order of opening.

    Works as a context manager or as a plain call::

        with mc_mode(model) as handle: ...
        handle = mc_mode(model); ...; handle.restore()

    Args:
        model: Any module.
        sites: None for every site; or one or a list of: a kind (``"attention"``),
            ``"head"``, a glob on the path, a compiled regex, a predicate on the
            site, or :class:`DropoutSite` objects (e.g. functional sites from
            ``find_dropout(model, probe_inputs=...)``). ``"head"`` selects, for a
            Hugging Face task model, the sites outside the base model (BERT's
            ``dropout`` before ``classifier``, RoBERTa's ``classifier.dropout``,
            DistilBERT's ``dropout`` after ``pre_classifier``); for other models,
            sites under a top-level ``head``, ``head_drop``, ``fc``,
            ``classifier``, ``pre_classifier``, ``score`` or ``dropout`` child and
            a root ``drop_rate`` attribute (timm).

    Returns:
        An :class:`MCMode` handle; ``handle.enabled`` lists the sites switched on.

    Raises:
        TypeError: If ``model`` is not a module or ``sites`` has a wrong type.
        ValueError: If a ``sites`` entry selects no site.
        RuntimeError: If no selected site has ``p > 0``.
    """
    return MCMode(model, sites)


class DropoutActiveWarning(UserWarning):
    """A forward ran without gradients while dropout was active outside ``mc_mode``."""


class GuardHandle:
    """Handle of :func:`guard`; call :meth:`remove` to uninstall it."""

    def __init__(self, model: nn.Module) -> None:
        self._sites = [s for s in _static_sites(model) if s.gates]
        self.warned = False
        self._hook = model.register_forward_pre_hook(self._check)

    def _check(self, module: nn.Module, args: Any) -> None:
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return
        active = [
            s
            for s in self._sites
            if s.gates[0].training
            and float(getattr(s.module, str(s.attr), 0.0)) > 0
            and id(s.gates[0]) not in _MC_FLIPPED
        ]
        if active:
            self.warned = True
            self.remove()
            names = ", ".join(s.name for s in active[:3])
            warnings.warn(
                f"guard: expected dropout off for a forward without gradients, but "
                f"{len(active)} dropout sites are active ({names}, ...). Call "
                "model.eval() for inference, or use dropkit.mc_mode(model) for MC dropout.",
                DropoutActiveWarning,
                stacklevel=_caller_level(),
            )

    def remove(self) -> None:
        """Remove the hook (idempotent)."""
        self._hook.remove()


def _caller_level() -> int:
    # The hook runs inside torch's Module.__call__: point the warning at the user's
    # line that called the model, the first frame outside torch and dropkit.
    import os
    import sys

    skip = (os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def guard(model: nn.Module) -> GuardHandle:
    """Warn once when ``model`` runs with dropout on under ``no_grad`` / inference mode.

    Installs a forward pre-hook on ``model`` only (nothing runs when not
    installed). At a forward under ``torch.no_grad()`` or
    ``torch.inference_mode()``, if a site is active and was not switched on by
    :func:`mc_mode`, a :class:`DropoutActiveWarning` names the sites (the
    forgotten ``model.eval()``); the hook then removes itself.

    Args:
        model: Any module.

    Returns:
        A :class:`GuardHandle`; ``handle.remove()`` uninstalls it.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``.
    """
    check_module("guard", model)
    return GuardHandle(model)

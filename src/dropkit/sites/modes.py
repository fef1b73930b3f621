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

import threading
import warnings
from typing import Any

import torch
from torch import nn

from dropkit._validation import check_bool, check_module
from dropkit.sites.claims import (
    CLAIMS,
    LOCK,
    held,
    next_token,
    original,
    release,
    switched_on,
    take,
)
from dropkit.sites.discover import calls_dropout_functionally, static_sites
from dropkit.sites.record import DropoutSite
from dropkit.sites.select import SiteSelector, select_sites

__all__ = ["mc_mode", "MCMode", "guard", "GuardHandle", "DropoutActiveWarning", "held"]

_ADD_DROPOUT = "Add dropout with dropkit.set_dropout(model, 0.1)."


class MCMode:
    """Handle returned by :func:`mc_mode`: a context manager with ``restore()``.

    Every value the block changes (a ``training`` flag, a zeroed rate,
    ``gradient_checkpointing``) is a claim on ``(object, attribute)`` shared
    by all open blocks: the value is that of the most recently opened block
    still open, and the original comes back when the last holder restores, in
    any order and from any thread.

    Args:
        model: Any module.
        sites: See :func:`mc_mode`.
        eval_others: Also hold every other module's flag at ``False`` (eval
            mode) while open, as :func:`~dropkit.mc_predict` does, without
            calling the model's ``eval()`` / ``train()``.

    Attributes:
        enabled: The stochastic sites switched on (``p > 0``).
    """

    def __init__(
        self, model: nn.Module, sites: SiteSelector | None = None, *, eval_others: bool = False
    ) -> None:
        self._start(model, sites, eval_others, "MCMode")

    def _start(
        self, model: nn.Module, sites: SiteSelector | None, eval_others: bool, caller: str
    ) -> None:
        check_module(caller, model)
        check_bool(caller, eval_others, "eval_others")
        self._keys: list[tuple[int, str]] = []
        self._token = next_token()
        self._open = True
        with LOCK:
            # Under the lock: another thread's block may be half switched otherwise.
            found = static_sites(model)  # one walk serves the selector and the gates
            selected = select_sites(model, sites, caller, found=found)
            self.enabled: list[DropoutSite] = [s for s in selected if _site_p(s) > 0 and s.gates]
            if not self.enabled:
                raise RuntimeError(
                    f"{caller}: expected at least one dropout site with p > 0, but got "
                    f"{len(selected)} selected sites, none stochastic. {_fix_for(model)}"
                )
            try:
                self._switch_on(model, eval_others, found)
            except BaseException:
                self.restore()
                raise

    def _switch_on(self, model: nn.Module, eval_others: bool, found: list[DropoutSite]) -> None:
        token = self._token
        chosen = {s.name for s in self.enabled}
        gates: dict[int, nn.Module] = {}
        for site in self.enabled:
            for gate in site.gates:
                gates[id(gate)] = gate
            if site.module is not None and site.control != "functional":
                # another open block may have zeroed this rate as collateral: claim it back
                attr = str(site.attr)
                if (id(site.module), attr) in CLAIMS:
                    self._keys.append(take(token, site.module, attr, original(site.module, attr)))
        # Other rates that a flipped gate reads would start dropping too: zero them.
        for site in found:
            if site.name in chosen or site.control == "functional" or not site.gates:
                continue
            if id(site.gates[0]) in gates and _site_p(site) > 0 and site.module is not None:
                self._keys.append(take(token, site.module, str(site.attr), 0.0))
        for gate in gates.values():
            if original(gate, "gradient_checkpointing") is True:
                self._keys.append(take(token, gate, "gradient_checkpointing", False))
            self._keys.append(take(token, gate, "training", True))
        if eval_others:
            for module in model.modules():
                if id(module) not in gates:
                    self._keys.append(take(token, module, "training", False))

    def restore(self) -> None:
        """Give back every flag and rate this block holds (idempotent, any order, any thread).

        A value returns to the one asked for by the most recently opened block
        still open, or to its value before the first block when this was the
        last holder.
        """
        with LOCK:
            if not self._open:
                return
            self._open = False
            keys, self._keys = self._keys, []
        release(self._token, keys)

    def __enter__(self) -> MCMode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def __repr__(self) -> str:
        state = "open" if self._open else "restored"
        return f"MCMode({len(self.enabled)} sites enabled, {state})"


def _site_p(site: DropoutSite) -> float:
    # The rate before any open block zeroed it (a concurrent block's collateral).
    if site.module is None or site.control == "functional" or site.attr is None:
        return site.p
    return float(original(site.module, site.attr))


def _fix_for(model: nn.Module) -> str:
    if calls_dropout_functionally(model):
        return (
            "The model calls dropout functionally (F.dropout or "
            "scaled_dot_product_attention(dropout_p=...)), which only a probe forward "
            "finds: pass sites=dropkit.find_dropout(model, probe_inputs=x) to switch "
            "those calls on."
        )
    return _ADD_DROPOUT


def mc_mode(model: nn.Module, *, sites: SiteSelector | None = None) -> MCMode:
    """Make only the selected dropout sites drop, keeping everything else in eval.

    Flips the ``training`` flag of each selected site's gates (the dropout module
    and, for fused attention, the attention module that reads the rate) and of
    nothing else: ``model.train()`` is never called, BatchNorm and other norms
    keep their mode and running statistics. A flipped gate module's other rates
    (unselected attribute sites, e.g. BART's ``layerdrop``) are set to 0 and its
    ``gradient_checkpointing`` switched off until restore. On exit (also after an
    exception) every module's previous flag is restored exactly.

    Blocks may be opened and closed in any order and from any thread: each
    changed value is held by reference count, takes the value asked for by the
    most recently opened block still open, and returns to its value before the
    first block when the last one closes. So two threads may each run MC on
    one shared model (two :func:`~dropkit.mc_predict` calls, say): each call
    draws its own masks and keeps its own state, the model's flags are the
    same for both while either is open, and the model is exactly as before once
    both are done. Blocks that select *different* sites share one model's
    flags: while both are open, the latest block's choice holds for both.

    Works as a context manager or as a plain call::

        with mc_mode(model) as handle: ...
        handle = mc_mode(model); ...; handle.restore()

    Args:
        model: Any module.
        sites: None for every site; or, as everywhere in dropkit
            (:mod:`dropkit.sites.select`), one or a list (the union) of: a kind
            (``"attention"``),
            ``"head"``, a glob on the path, a compiled regex, a predicate on the
            site, or :class:`DropoutSite` objects (e.g. functional sites from
            ``find_dropout(model, probe_inputs=...)``). ``"head"`` selects, for a
            Hugging Face task model, the sites outside the base model (BERT's
            ``dropout`` before ``classifier``, RoBERTa's ``classifier.dropout``,
            DistilBERT's ``dropout`` after ``pre_classifier``); for other models,
            sites under a top-level ``head``, ``head_drop``, ``fc``,
            ``classifier``, ``pre_classifier``, ``score`` or ``dropout`` child and
            a root ``drop_rate`` attribute (timm).
            ``"last:k"`` selects the sites of the model's last ``k`` repeated
            blocks (found from its structure: the largest group of same-class
            children holding sites, e.g. ``encoder.layer``) and every site after
            them (pooler, head); ``"blocks:i-j"`` blocks ``i`` to ``j`` (0-based,
            inclusive) and the sites after the blocks.

    Returns:
        An :class:`MCMode` handle; ``handle.enabled`` lists the sites switched on.

    Raises:
        TypeError: If ``model`` is not a module or ``sites`` has a wrong type.
        ValueError: If a ``sites`` entry selects no site, or a ``"last:k"`` /
            ``"blocks:i-j"`` selector is malformed, out of range or finds no
            repeated blocks.
        RuntimeError: If no selected site has ``p > 0`` (for a model whose
            dropout is only functional, the message says to pass
            ``sites=find_dropout(model, probe_inputs=x)``).
    """
    return open_mc_mode(model, sites, caller="mc_mode")


def open_mc_mode(
    model: nn.Module,
    sites: SiteSelector | None = None,
    *,
    eval_others: bool = False,
    caller: str = "mc_mode",
) -> MCMode:
    """Open an :class:`MCMode` block whose errors name ``caller`` (e.g. ``mc_predict``)."""
    handle = MCMode.__new__(MCMode)
    handle._start(model, sites, eval_others, caller)
    return handle


class DropoutActiveWarning(UserWarning):
    """A forward ran without gradients while dropout was active outside ``mc_mode``."""


class GuardHandle:
    """Handle of :func:`guard`; call :meth:`remove` to uninstall it."""

    def __init__(self, model: nn.Module) -> None:
        self._sites = [s for s in static_sites(model) if s.gates]
        self.warned = False
        self._lock = threading.Lock()
        self._hook = model.register_forward_pre_hook(self._check)

    def _check(self, module: nn.Module, args: Any) -> None:
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return
        active = [
            s
            for s in self._sites
            if s.gates[0].training
            and float(getattr(s.module, str(s.attr), 0.0)) > 0
            and not switched_on(s.gates[0])
        ]
        if active:
            with self._lock:  # two threads may reach here at once: warn once
                if self.warned:
                    return
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

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

import itertools
import re
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from dropkit._validation import check_bool, check_module
from dropkit.sites import KINDS, DropoutSite, _static_sites, check_where, match_where

__all__ = ["mc_mode", "MCMode", "guard", "GuardHandle", "DropoutActiveWarning"]

_ADD_DROPOUT = "Add dropout with dropkit.set_dropout(model, 0.1)."

SiteSpec = str | re.Pattern[str] | DropoutSite | Callable[[DropoutSite], bool]


def select_sites(model: nn.Module, sites: Any, caller: str = "mc_mode") -> list[DropoutSite]:
    """Resolve a ``sites`` argument (see :func:`mc_mode`) to a list of sites."""
    found = _static_sites(model)
    if sites is None:
        return found
    single = isinstance(sites, (str, re.Pattern, DropoutSite)) or callable(sites)
    if not single and (not isinstance(sites, Iterable) or isinstance(sites, (bytes, Mapping))):
        raise TypeError(
            f"{caller}: expected sites to be None, 'head', a kind, a path pattern, a "
            f"predicate, DropoutSite objects or a list of those, but got {sites!r}. "
            f"Pass e.g. sites='head' or sites=['attention', 'classifier.*']; known kinds: "
            f"{', '.join(KINDS)}."
        )
    specs: Iterable[Any] = [sites] if single else list(sites)
    chosen: dict[str, DropoutSite] = {}
    for spec in specs:
        if isinstance(spec, DropoutSite):
            picked = [spec]
        elif spec == "head":
            picked = [s for s in found if _is_head(model, s)]
        elif isinstance(spec, str) and spec.startswith(("last:", "blocks:")):
            from dropkit._blocks import select_depth

            picked = select_depth(model, found, spec, caller, lambda s: _is_head(model, s))
        elif isinstance(spec, str) and spec in KINDS:
            picked = [s for s in found if s.kind == spec]
        elif isinstance(spec, (str, re.Pattern)) or callable(spec):
            check_where(caller, spec, "sites")
            picked = [s for s in found if match_where(spec, s)]
        else:
            raise TypeError(
                f"{caller}: expected sites to be None, 'head', a kind, a path pattern, a "
                f"predicate or DropoutSite objects, but got {spec!r}. "
                f"Known kinds: {', '.join(KINDS)}."
            )
        if not picked:
            raise ValueError(
                f"{caller}: expected sites entry {spec!r} to select at least one of the "
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


class _Claim:
    """The holders of one ``(object, attribute)`` and its value before the first one."""

    __slots__ = ("ref", "attr", "original", "holders")

    def __init__(self, ref: weakref.ref[Any], attr: str, original: Any) -> None:
        self.ref = ref
        self.attr = attr
        self.original = original
        # holder token -> the value it asked for, in opening order
        self.holders: dict[int, Any] = {}


# (id(object), attribute) -> its claim, while at least one open block holds it. An entry
# keeps only a weak reference: a model dropped with a block left open does not leak.
_CLAIMS: dict[tuple[int, str], _Claim] = {}
# Re-entrant: a weakref callback may run (garbage collection) while the lock is held.
_LOCK = threading.RLock()


def _forget(key: tuple[int, str], claim: _Claim) -> Callable[[Any], None]:
    def callback(_ref: Any) -> None:
        with _LOCK:
            if _CLAIMS.get(key) is claim:
                del _CLAIMS[key]

    return callback


def _claim(token: int, obj: Any, attr: str, value: Any) -> tuple[int, str]:
    """Set ``obj.attr = value`` on behalf of ``token``; the caller holds ``_LOCK``."""
    key = (id(obj), attr)
    claim = _CLAIMS.get(key)
    fresh = claim is None or claim.ref() is not obj
    original = getattr(obj, attr) if fresh else claim.original  # type: ignore[union-attr]
    setattr(obj, attr, value)  # may raise: nothing is registered yet
    if fresh:
        claim = _Claim(None, attr, original)  # type: ignore[arg-type]
        claim.ref = weakref.ref(obj, _forget(key, claim))
        _CLAIMS[key] = claim
    claim.holders[token] = value  # type: ignore[union-attr]
    return key


def _release(token: int, keys: list[tuple[int, str]]) -> None:
    """Drop ``token``'s claims: each value returns to the latest open holder's, or the original."""
    with _LOCK:
        for key in reversed(keys):
            claim = _CLAIMS.get(key)
            if claim is None or claim.holders.pop(token, _MISSING) is _MISSING:
                continue
            obj = claim.ref()
            if obj is None:
                del _CLAIMS[key]
                continue
            if claim.holders:
                setattr(obj, claim.attr, next(reversed(claim.holders.values())))
            else:
                del _CLAIMS[key]
                setattr(obj, claim.attr, claim.original)


@contextmanager
def held(values: Iterable[tuple[Any, str, Any]]) -> Iterator[None]:
    """Hold ``obj.attr = value`` for each triple while the block runs, as one claim holder.

    The values share :func:`mc_mode`'s reference counts, so blocks of both kinds
    restore one another correctly in any order and from any thread.
    """
    token = next(_TOKENS)
    keys: list[tuple[int, str]] = []
    try:
        with _LOCK:
            for obj, attr, value in values:
                keys.append(_claim(token, obj, attr, value))
        yield
    finally:
        _release(token, keys)


def _original(obj: Any, attr: str) -> Any:
    """``obj.attr`` as it was before any open block changed it (None if absent)."""
    claim = _CLAIMS.get((id(obj), attr))
    if claim is not None and claim.ref() is obj:
        return claim.original
    return getattr(obj, attr, None)


def _switched_on(module: nn.Module) -> bool:
    """Whether an open :func:`mc_mode` block holds ``module``'s flag on."""
    claim = _CLAIMS.get((id(module), "training"))
    return bool(claim is not None and claim.ref() is module and claim.holders and module.training)


_MISSING = object()
_TOKENS = itertools.count()


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

    def __init__(self, model: nn.Module, sites: Any = None, *, eval_others: bool = False) -> None:
        check_module("mc_mode", model)
        check_bool("mc_mode", eval_others, "eval_others")
        self._keys: list[tuple[int, str]] = []
        self._token = next(_TOKENS)
        self._open = True
        with _LOCK:
            # Under the lock: another thread's block may be half switched otherwise.
            selected = select_sites(model, sites)
            self.enabled: list[DropoutSite] = [s for s in selected if _site_p(s) > 0 and s.gates]
            if not self.enabled:
                raise RuntimeError(
                    f"mc_mode: expected at least one dropout site with p > 0, but got "
                    f"{len(selected)} selected sites, none stochastic. {_fix_for(model)}"
                )
            try:
                self._switch_on(model, eval_others)
            except BaseException:
                self.restore()
                raise

    def _switch_on(self, model: nn.Module, eval_others: bool) -> None:
        token = self._token
        chosen = {s.name for s in self.enabled}
        gates: dict[int, nn.Module] = {}
        for site in self.enabled:
            for gate in site.gates:
                gates[id(gate)] = gate
            if site.module is not None and site.control != "functional":
                # another open block may have zeroed this rate as collateral: claim it back
                attr = str(site.attr)
                if (id(site.module), attr) in _CLAIMS:
                    self._keys.append(
                        _claim(token, site.module, attr, _original(site.module, attr))
                    )
        # Other rates that a flipped gate reads would start dropping too: zero them.
        for site in _static_sites(model):
            if site.name in chosen or site.control == "functional" or not site.gates:
                continue
            if id(site.gates[0]) in gates and _site_p(site) > 0 and site.module is not None:
                self._keys.append(_claim(token, site.module, str(site.attr), 0.0))
        for gate in gates.values():
            if _original(gate, "gradient_checkpointing") is True:
                self._keys.append(_claim(token, gate, "gradient_checkpointing", False))
            self._keys.append(_claim(token, gate, "training", True))
        if eval_others:
            for module in model.modules():
                if id(module) not in gates:
                    self._keys.append(_claim(token, module, "training", False))

    def restore(self) -> None:
        """Give back every flag and rate this block holds (idempotent, any order, any thread).

        A value returns to the one asked for by the most recently opened block
        still open, or to its value before the first block when this was the
        last holder.
        """
        with _LOCK:
            if not self._open:
                return
            self._open = False
            keys, self._keys = self._keys, []
        _release(self._token, keys)

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
    return float(_original(site.module, site.attr))


def _fix_for(model: nn.Module) -> str:
    from dropkit._probe import calls_dropout_functionally

    if calls_dropout_functionally(model):
        return (
            "The model calls dropout functionally (F.dropout or "
            "scaled_dot_product_attention(dropout_p=...)), which only a probe forward "
            "finds: pass sites=dropkit.find_dropout(model, probe_inputs=x) to switch "
            "those calls on."
        )
    return _ADD_DROPOUT


def mc_mode(model: nn.Module, *, sites: Any = None) -> MCMode:
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
    return MCMode(model, sites)


class DropoutActiveWarning(UserWarning):
    """A forward ran without gradients while dropout was active outside ``mc_mode``."""


class GuardHandle:
    """Handle of :func:`guard`; call :meth:`remove` to uninstall it."""

    def __init__(self, model: nn.Module) -> None:
        self._sites = [s for s in _static_sites(model) if s.gates]
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
            and not _switched_on(s.gates[0])
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

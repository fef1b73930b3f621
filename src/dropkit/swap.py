"""Swap ``torch.nn.Dropout`` modules for dropkit's fast kernel, in place.

:func:`fast_dropout` replaces every exact ``torch.nn.Dropout`` in a model with
:class:`dropkit.nn.Dropout`, which runs the counter-based kernel of
:mod:`dropkit.kernels` (several times faster on CPU, no mask kept for
backward). Attributes that other code reads keep working: Hugging Face BERT
passes ``self.dropout.p`` to fused attention, and the swapped module has the
same ``p``. ``sites=`` (the selector of :mod:`dropkit.sites.select`) limits the
swap to the selected sites.

With ``attention=True``, attention-probability dropout that a framework applies
inside its own attention (Hugging Face models on ``sdpa``) runs through the
kernel too. That needs code which imports the framework, and this module is
core: it must not import the integration layer, not even lazily. So the
dependency is inverted through a small extension point: an adapter module calls
:func:`register_attention_router` when it is imported, and
:data:`ATTENTION_ADAPTERS` names, per framework, the adapter to import. The
table is consulted only for frameworks already in ``sys.modules``: a model of a
framework exists only once that framework is imported, so the check imports
nothing heavy, and without it no model can need routing.

References:
    Srivastava et al., "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 2014.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from dropkit._validation import _fail, check_module
from dropkit.sites.select import SiteSelector, check_sites, select_sites

__all__ = ["fast_dropout", "register_attention_router", "ATTENTION_ADAPTERS"]

#: Framework module -> the adapter module that registers its attention router
#: (with :func:`register_attention_router`) when imported.
ATTENTION_ADAPTERS: dict[str, str] = {"transformers": "dropkit.integrations.hf_attention"}


@dataclass(frozen=True)
class _Router:
    find_roots: Callable[[nn.Module, str], list[nn.Module]]
    route: Callable[[list[nn.Module]], None]


_ROUTERS: dict[str, _Router] = {}


def register_attention_router(
    framework: str,
    find_roots: Callable[[nn.Module, str], list[nn.Module]],
    route: Callable[[list[nn.Module]], None],
) -> None:
    """Let ``fast_dropout(attention=True)`` route ``framework``'s attention dropout.

    Args:
        framework: The framework's top-level module name (``"transformers"``).
        find_roots: ``find_roots(model, caller)`` returns the models inside
            ``model`` whose attention can be routed, changing nothing, or
            raises ValueError naming what it found instead.
        route: Switches the models ``find_roots`` returned to the kernel.
    """
    _ROUTERS[framework] = _Router(find_roots, route)


def _routers() -> list[_Router]:
    for framework, adapter in ATTENTION_ADAPTERS.items():
        if framework in sys.modules and framework not in _ROUTERS:
            importlib.import_module(adapter)
    return [_ROUTERS[f] for f in ATTENTION_ADAPTERS if f in _ROUTERS]


def no_attention_model(caller: str, got: str) -> ValueError:
    """The error of ``attention=True`` on a model with nothing to route."""
    return ValueError(
        f"{caller}: expected a Hugging Face model with attn_implementation='sdpa' for "
        f"attention=True, but got {got}. Load the model with attn_implementation='sdpa' "
        "(or call model.set_attn_implementation('sdpa')), or leave attention=False."
    )


def fast_dropout(
    model: nn.Module, *, attention: bool = False, sites: SiteSelector | None = None
) -> int:
    """Replace every ``torch.nn.Dropout`` inside ``model`` with ``dropkit.nn.Dropout``.

    Only modules whose type is exactly ``torch.nn.Dropout`` are swapped
    (subclasses may change behaviour, and ``Dropout1d/2d/3d`` drop whole
    channels). Each replacement keeps ``p``, ``inplace`` and the ``training``
    flag; a module registered under several names is replaced by one shared
    new module. Neither has parameters or buffers, so ``state_dict`` keys and
    values are unchanged and checkpoints load either way.

    Args:
        model: The model to modify in place.
        attention: Also switch the Hugging Face models inside ``model`` that
            use ``attn_implementation="sdpa"`` to ``"dropkit_sdpa"``: the same
            attention, except that while training with a non-zero attention
            rate the probabilities are dropped by dropkit's kernel instead of
            inside ``scaled_dot_product_attention`` (evaluation stays the
            ``sdpa`` result bit for bit). Needs the ``hf`` extra.
            ``model.set_attn_implementation("sdpa")`` undoes it. It does not
            depend on ``sites``.
        sites: Swap only the ``nn.Dropout`` modules of these sites (None: all),
            as everywhere in dropkit (:mod:`dropkit.sites.select`): a kind,
            ``"head"``, ``"last:k"`` / ``"blocks:i-j"``, a glob over paths, a
            compiled regex, a predicate on the site, a ``DropoutSite``, or a
            list of those (their union).

    Returns:
        How many distinct ``nn.Dropout`` modules were replaced.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or ``attention`` is
            not a bool.
        ValueError: If ``model`` itself is an ``nn.Dropout`` (it cannot be
            replaced in place), ``attention=True`` finds no Hugging Face
            model on ``sdpa`` attention, or a ``sites`` entry selects no site
            (nothing is changed then).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.ReLU())
        >>> fast_dropout(net)
        1
        >>> type(net[1]).__module__, net[1].p
        ('dropkit.nn.dropout', 0.2)
        >>> head = nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 4))
        >>> net = nn.ModuleDict({"body": head, "classifier": nn.Dropout(0.3)})
        >>> fast_dropout(net, sites="head"), type(net["body"][0]).__module__
        (1, 'torch.nn.modules.dropout')
    """
    from dropkit.nn import Dropout

    check_module("fast_dropout", model)
    if type(model) is nn.Dropout:
        raise _fail(
            ValueError,
            "fast_dropout",
            "a model that contains nn.Dropout modules",
            model,
            "Use dropkit.nn.Dropout(p) directly, or wrap the layer in a container.",
        )
    if not isinstance(attention, bool):
        raise _fail(
            TypeError, "fast_dropout", "attention to be a bool", attention, "Pass True or False."
        )
    # everything is checked before anything changes
    chosen: set[int] | None = None
    if sites is not None:
        check_sites("fast_dropout", sites)
        picked = select_sites(model, sites, "fast_dropout")
        chosen = {id(s.module) for s in picked if s.control == "module"}
    router: _Router | None = None
    roots: list[nn.Module] = []
    if attention:
        router, roots = _attention_roots(model)
    replaced: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        # _modules, not named_children(): the latter hides a second name of a
        # shared module, which must be swapped too
        for name, child in list(parent._modules.items()):
            if type(child) is not nn.Dropout or (chosen is not None and id(child) not in chosen):
                continue
            new = replaced.get(id(child))
            if new is None:
                new = Dropout(p=child.p, inplace=child.inplace)
                new.train(child.training)
                replaced[id(child)] = new
            setattr(parent, name, new)
    if router is not None:
        router.route(roots)
    return len(replaced)


def _attention_roots(model: nn.Module) -> tuple[_Router, list[nn.Module]]:
    errors: list[ValueError] = []
    for router in _routers():
        try:
            return router, router.find_roots(model, "fast_dropout")
        except ValueError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
    raise no_attention_model(
        "fast_dropout", f"a {type(model).__name__} with no Hugging Face model inside"
    )

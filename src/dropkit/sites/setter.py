"""Set the drop rates of a live model and of its Hugging Face config together.

:func:`set_dropout` validates every argument and computes every new rate (live
sites and Hugging Face config fields, :mod:`dropkit.sites.hf_config`) before
touching the model, then applies the plan; if an assignment still fails, the
ones already made are undone, so a model is never left half changed.

References:
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 2014.
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeAlias

from torch import nn

from dropkit._validation import check_callable, check_module, check_p
from dropkit.sites.discover import static_sites, with_depth
from dropkit.sites.find import ProbeInputs, find_dropout
from dropkit.sites.hf_config import config_plans, config_sites_of, field_owner, pretrained_roots
from dropkit.sites.record import DropoutChange, DropoutSite
from dropkit.sites.select import (
    SiteSelector,
    Where,
    check_kinds,
    check_sites,
    describe,
    kinds_named,
    resolve_aliases,
    select_sites,
)

__all__ = ["set_dropout", "Rate"]

#: The ``p`` of :func:`set_dropout`: one rate, a mapping ``kind -> p``, or a
#: function ``fn(site, depth_fraction) -> p``.
Rate: TypeAlias = float | Mapping[str, float] | Callable[[DropoutSite, float], float]

_TOL = 1e-9
_CALLER = "set_dropout"


def set_dropout(
    model: nn.Module,
    p: Rate,
    *,
    sites: SiteSelector | None = None,
    probe_inputs: ProbeInputs | None = None,
    kinds: str | Iterable[str] | None = None,
    where: Where | None = None,
) -> list[DropoutChange]:
    """Set the drop rates of a live model and of its Hugging Face config together.

    Every selected site gets its new rate (dropout modules' ``p``, DropPath's
    ``drop_prob``, float attributes such as Llama's ``attention_dropout``), and
    for each Hugging Face ``PreTrainedModel`` inside ``model`` the config fields
    that build those sites (``hidden_dropout_prob``, ``attn_pdrop``,
    ``drop_path_rate``, ...) are updated, so ``save_pretrained`` then
    ``from_pretrained`` rebuilds the same rates. Which field builds which site is
    measured, not guessed: the model class is instantiated on the ``meta`` device
    with each field set to a marker value. A site that a config field scales
    (ConvNeXt's stochastic depth, ``drop_path_rate * i / (n - 1)``) keeps that
    rule when ``p`` is a number or mapping: the field gets ``p`` and the site
    ``p`` times its factor. Everything is validated before anything changes.

    Args:
        model: Any module.
        p: A drop probability in ``[0, 1]`` for every selected site (``1``, drop
            everything, as ``torch.nn.Dropout(1.0)`` accepts it, except at
            variants whose scaling divides by ``1 - p``: alpha, Gaussian and
            concrete dropout); a mapping
            ``kind -> p`` (kinds absent from it keep their rates); or a function
            ``fn(site, depth_fraction) -> p`` called per site, where
            ``depth_fraction`` runs from 0 (first block) to 1 (last block), so
            ``lambda s, d: 0.1 * d`` gives deeper layers higher rates.
        sites: Which sites to change (None: all), as everywhere in dropkit
            (:mod:`dropkit.sites.select`): a kind, ``"head"``, ``"last:k"`` /
            ``"blocks:i-j"``, a glob over paths (``"encoder.layer.1*"``), a
            compiled regex, a predicate on the site, a :class:`DropoutSite`, or
            a list of those (their union). Functional sites (no knob) are never
            changed. Models without a config (timm, plain PyTorch) get ``p``
            literally at every selected site.
        probe_inputs: Inputs for one probe forward (see :func:`find_dropout`), so
            that rates a custom forward passes to ``F.dropout`` /
            ``scaled_dot_product_attention`` from a float attribute of any name
            (``F.dropout(x, self.rate, self.training)``) are found and set too.
        kinds: Deprecated alias: only sites of these kinds; use ``sites=``.
        where: Deprecated alias: only sites matching this glob, regex or
            predicate (with ``kinds``: both); use ``sites=``.

    Returns:
        One :class:`~dropkit.sites.record.DropoutChange` per changed rate, live
        sites first, then config fields (``control="config"``, ``attr`` = field
        name).

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``, ``p`` or ``sites`` has a
            wrong type, or ``sites`` is given with ``kinds`` / ``where``.
        ValueError: If a rate is outside ``[0, 1]`` (``[0, 1)`` at alpha,
            Gaussian or concrete dropout), a kind is unknown, or a
            ``"last:k"`` / ``"blocks:i-j"`` selector does not fit the model.

    Warns:
        UserWarning: If ``sites`` selects no site (nothing changes), or a kind
        in a mapping ``p`` selects none (``{"path": 0.1}`` on a model built
        without DropPath: rebuild it with ``drop_path_rate``); if a config field
        cannot express the new per-site rates, or a changed site of a Hugging
        Face model is built by no config field (the live rate changes, a reload
        would not keep it); if a selected config-only site (see
        :func:`find_dropout`) would need modules the model was built without.
        DeprecationWarning: If ``kinds`` or ``where`` is passed.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2))
        >>> [(c.path, c.old, c.new) for c in set_dropout(net, 0.3)]
        [('1', 0.2, 0.3)]
        >>> [c.path for c in set_dropout(net, 0.1, sites="element")]
        ['1']
    """
    check_module(_CALLER, model)
    sites = resolve_aliases(_CALLER, sites, kinds, where)
    return _set(model, p, sites, probe_inputs)


def _p_at(p: Any) -> Callable[[DropoutSite], float | None]:
    """Validate ``p`` and return ``p_at(site) -> new rate or None`` (keep)."""
    if isinstance(p, Mapping):
        check_kinds(_CALLER, list(p))
        p_of_kind = {
            kind: check_p(_CALLER, p_kind, name=f"p[{kind!r}]", allow_one=True)
            for kind, p_kind in p.items()
        }
        return lambda site: p_of_kind.get(site.kind)
    if isinstance(p, numbers.Real) and not isinstance(p, bool):
        p_all = check_p(_CALLER, p, allow_one=True)
        return lambda site: p_all
    if callable(p):
        check_callable(_CALLER, p, "p", 2, "p=lambda site, depth: 0.1 * depth")

        def p_at(site: DropoutSite) -> float:
            p_site = p(site, site.depth_fraction)
            return check_p(
                f"set_dropout (site {site.name!r})", p_site, name="p(site, depth)", allow_one=True
            )

        return p_at
    check_p(_CALLER, p)  # raises TypeError with the shared wording
    raise AssertionError("unreachable")  # pragma: no cover


def _set(
    model: nn.Module, p: Any, sites: SiteSelector | None, probe_inputs: ProbeInputs | None
) -> list[DropoutChange]:
    check_sites(_CALLER, sites)
    p_at = _p_at(p)
    if probe_inputs is None:
        found = static_sites(model)
    else:  # rates that a custom forward passes to F.dropout from a float attribute
        found = find_dropout(model, probe_inputs=probe_inputs, config=False)
    settable = [s for s in found if s.control in ("module", "attribute")]
    chosen = [
        s
        for s in select_sites(model, sites, _CALLER, found=settable, strict=False)
        if s.control in ("module", "attribute") and s.module is not None
    ]
    plans = config_plans(model)
    config_only = with_depth(model, config_sites_of(plans))
    latent = [
        s
        for s in (
            select_sites(model, sites, _CALLER, found=config_only, strict=False, blocks_of=found)
            if config_only
            else []
        )
        if s.control == "config" and (p_at(s) or 0.0) > 0
    ]
    if latent:
        fields = ", ".join(f"{s.attr}={s.p}" for s in latent)
        warnings.warn(
            f"set_dropout: expected live sites for the config fields {fields}, but the "
            "model was built without them (rate 0 builds no module), so they cannot be "
            "switched on in place and the config was left as is. Rebuild the model with "
            f"the rate, e.g. from_pretrained(path, {latent[0].attr}=0.1).",
            stacklevel=3,
        )
    if not chosen:
        if not latent:
            warnings.warn(
                f"set_dropout: expected {describe(sites)} to select at least one of the "
                f"model's {len(settable)} dropout sites, but they select none. Nothing was "
                "changed; list the sites with dropkit.find_dropout(model)."
                + _missing_fix(kinds_named(sites)),
                stacklevel=3,
            )
        return []
    if isinstance(p, Mapping):
        # Like sites=: warn when the mapping applies nowhere (a mapping shared by several
        # models, {"element": ..., "path": ...}, may name kinds that one model lacks).
        have = {s.kind for s in chosen} | {s.kind for s in latent}
        missing = [k for k in p if float(p[k]) > 0]
        if missing and not have & set(p):
            warnings.warn(
                f"set_dropout: expected the kinds of p to select at least one of the "
                f"model's {len(settable)} dropout sites, but {sorted(p)} select none. Nothing "
                "was changed; list the sites with dropkit.find_dropout(model)."
                + _missing_fix(frozenset(missing)),
                stacklevel=3,
            )
    owner = {s.name: plan for plan in plans for s in settable if plan.owns(s)}
    targets: dict[str, float] = {}
    for site in chosen:
        plan = owner.get(site.name)
        scale = plan.scale(site) if plan is not None else None
        scaled = scale is not None and abs(scale - 1.0) > _TOL and not is_per_site(p)
        p_site = p_at(site)
        if p_site is None:
            continue
        targets[site.name] = p_site * scale if scaled and scale is not None else p_site
    roots = [prefix for prefix, _ in pretrained_roots(model)]
    unsaved = [
        s.name
        for s in chosen
        if s.name in targets
        and targets[s.name] != s.p
        and s.name not in owner
        and any(r == "" or s.path.startswith(r + ".") for r in roots)
    ]
    if unsaved:
        warnings.warn(
            f"set_dropout: expected every changed site of a Hugging Face model to be built "
            f"from a config field, but {len(unsaved)} are not ({', '.join(unsaved[:3])}). "
            "They change live, but save_pretrained/from_pretrained will not keep their rates.",
            stacklevel=3,
        )
    for site in chosen:
        if targets.get(site.name) == 1.0 and not _allows_one(site):
            raise ValueError(
                f"set_dropout: expected p in [0, 1) at site {site.name!r} "
                f"({type(site.module).__name__}), but got 1.0. This variant cannot drop "
                "everything (its scaling divides by 1 - p); use a rate below 1 there, e.g. "
                "pass a mapping or sites= that leaves it out."
            )
    ops: list[tuple[Any, str, Any, Any]] = []
    changes: list[DropoutChange] = []
    for site in chosen:
        if site.name not in targets or targets[site.name] == site.p:
            continue
        new = targets[site.name]
        attr = str(site.attr)
        ops.append((site.module, attr, getattr(site.module, attr), new))
        control: Literal["module", "attribute"] = (
            "module" if site.control == "module" else "attribute"
        )
        changes.append(DropoutChange(site.path, attr, site.kind, control, site.p, new))
    for plan in plans:
        for field, old, new, kind in plan.solve(settable, targets):
            ops.append((*field_owner(plan.root.config, field), old, new))
            changes.append(DropoutChange(plan.prefix, field, kind, "config", old, new))
    _apply(ops)
    return changes


def _allows_one(site: DropoutSite) -> bool:
    # dropkit variants say so; other modules of a kind that scales by 1 / (1 - p) or
    # needs it for its moments (alpha, Gaussian, concrete) refuse it; torch's dropout,
    # timm's DropPath and float rate attributes accept p = 1 (all dropped).
    declared = getattr(type(site.module), "allow_one", None)
    if isinstance(declared, bool):
        return declared
    return site.kind not in ("alpha", "gaussian", "concrete")


def _missing_fix(kinds: frozenset[str]) -> str:
    if "path" in kinds:
        return (
            " Stochastic depth needs DropPath modules that a model built with rate 0 "
            "does not have: rebuild it with the rate, e.g. timm.create_model(name, "
            "drop_path_rate=0.1), or from_pretrained(path, drop_path_rate=0.1)."
        )
    return ""


def is_per_site(p: Any) -> bool:
    """Whether ``p`` is a per-site function (rates taken literally, not scaled)."""
    return callable(p) and not isinstance(p, (Mapping, numbers.Real))


def _apply(ops: list[tuple[Any, str, Any, Any]]) -> None:
    done: list[tuple[Any, str, Any, Any]] = []
    try:
        for obj, attr, old, new in ops:
            setattr(obj, attr, new)
            done.append((obj, attr, old, new))
    except BaseException:
        for obj, attr, old, _ in reversed(done):
            setattr(obj, attr, old)
        raise

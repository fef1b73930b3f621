"""The transactional engine behind :func:`dropkit.set_dropout`.

It validates every argument and computes every new rate (live sites and Hugging
Face config fields) before touching the model, then applies the plan; if an
assignment still fails, the ones already made are undone, so a model is never
left half changed.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from dropkit._validation import check_callable, check_module, check_p
from dropkit.sites import (
    DropoutSite,
    _static_sites,
    _with_depth,
    check_kinds,
    check_where,
    match_where,
)

_TOL = 1e-9


@dataclass(frozen=True)
class DropoutChange:
    """One rate changed by :func:`dropkit.set_dropout`.

    Attributes:
        path: Module path of the site, or of the ``PreTrainedModel`` whose config
            field changed.
        attr: Rate attribute (``p``, ``drop_prob``, ``attention_dropout``) or
            config field name.
        kind: Site kind (for a config field: the kind of the first site it builds).
        control: ``"module"``, ``"attribute"`` or ``"config"``.
        old: Previous value (None for an unset config field).
        new: New value.
    """

    path: str
    attr: str
    kind: str
    control: str
    old: float | None
    new: float


def _rule(p: Any) -> Callable[[DropoutSite], float | None]:
    """Validate ``p`` and return ``rule(site) -> new rate or None`` (keep)."""
    where = "set_dropout"
    if isinstance(p, Mapping):
        check_kinds(where, list(p))
        rates = {k: check_p(where, v, name=f"p[{k!r}]", allow_one=True) for k, v in p.items()}
        return lambda site: rates.get(site.kind)
    if isinstance(p, numbers.Real) and not isinstance(p, bool):
        value = check_p(where, p, allow_one=True)
        return lambda site: value
    if callable(p):
        check_callable(where, p, "p", 2, "p=lambda site, depth: 0.1 * depth")

        def call(site: DropoutSite) -> float:
            out = p(site, site.depth_fraction)
            return check_p(
                f"set_dropout (site {site.name!r})", out, name="p(site, depth)", allow_one=True
            )

        return call
    check_p(where, p)  # raises TypeError with the shared wording
    raise AssertionError("unreachable")  # pragma: no cover


def apply_set_dropout(
    model: nn.Module, p: Any, *, kinds: Any = None, where: Any = None, probe_inputs: Any = None
) -> list[DropoutChange]:
    """Implement :func:`dropkit.set_dropout` (see there)."""
    from dropkit.integrations import hf

    check_module("set_dropout", model)
    kind_set = check_kinds("set_dropout", kinds)
    check_where("set_dropout", where)
    rule = _rule(p)
    if probe_inputs is None:
        found = _static_sites(model)
    else:  # rates that a custom forward passes to F.dropout from a float attribute
        from dropkit.sites import find_dropout

        found = find_dropout(model, probe_inputs=probe_inputs, config=False)
    sites = [s for s in found if s.control in ("module", "attribute")]
    chosen = [s for s in sites if _selected(s, kind_set, where)]
    plans = hf.config_plans(model)
    latent = [
        s
        for s in _with_depth(model, hf.config_sites_of(plans))
        if _selected(s, kind_set, where) and (rule(s) or 0.0) > 0
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
                f"set_dropout: expected where={where!r} and kinds={kinds!r} to select at "
                f"least one of the model's {len(sites)} dropout sites, but they select none. "
                "Nothing was changed; list the sites with dropkit.find_dropout(model)."
                + _missing_fix(kind_set or frozenset()),
                stacklevel=3,
            )
        return []
    if isinstance(p, Mapping):
        # Like kinds=: warn when the mapping applies nowhere (a mapping shared by several
        # models, {"element": ..., "path": ...}, may name kinds that one model lacks).
        have = {s.kind for s in chosen} | {s.kind for s in latent}
        missing = [k for k in p if float(p[k]) > 0]
        if missing and not have & set(p):
            warnings.warn(
                f"set_dropout: expected the kinds of p to select at least one of the "
                f"model's {len(sites)} dropout sites, but {sorted(p)} select none. Nothing "
                "was changed; list the sites with dropkit.find_dropout(model)."
                + _missing_fix(frozenset(missing)),
                stacklevel=3,
            )
    owner = {s.name: plan for plan in plans for s in sites if plan.owns(s)}
    targets: dict[str, float] = {}
    for site in chosen:
        plan = owner.get(site.name)
        scale = plan.scale(site) if plan is not None else None
        scaled = scale is not None and abs(scale - 1.0) > _TOL and not callable_rule(p)
        new = rule(site)
        if new is None:
            continue
        targets[site.name] = new * scale if scaled and scale is not None else new
    roots = [prefix for prefix, _ in hf.pretrained_roots(model)]
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
                "pass a mapping or where= that leaves it out."
            )
    ops: list[tuple[Any, str, Any, Any]] = []
    changes: list[DropoutChange] = []
    for site in chosen:
        if site.name not in targets or targets[site.name] == site.p:
            continue
        new = targets[site.name]
        ops.append((site.module, str(site.attr), getattr(site.module, str(site.attr)), new))
        changes.append(
            DropoutChange(site.path, str(site.attr), site.kind, site.control, site.p, new)
        )
    for plan in plans:
        for field, old, new, kind in plan.solve(sites, targets):
            ops.append((*hf.field_owner(plan.root.config, field), old, new))
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


def _selected(site: DropoutSite, kinds: frozenset[str] | None, where: Any) -> bool:
    return (kinds is None or site.kind in kinds) and match_where(where, site)


def callable_rule(p: Any) -> bool:
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

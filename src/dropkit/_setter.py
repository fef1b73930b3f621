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

from dropkit._validation import check_module, check_p
from dropkit.sites import DropoutSite, _static_sites, _with_depth, check_kinds, match_where

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
        rates = {k: check_p(where, v, name=f"p[{k!r}]") for k, v in p.items()}
        return lambda site: rates.get(site.kind)
    if isinstance(p, numbers.Real) and not isinstance(p, bool):
        value = check_p(where, p)
        return lambda site: value
    if callable(p):

        def call(site: DropoutSite) -> float:
            out = p(site, site.depth_fraction)
            return check_p(f"set_dropout (site {site.name!r})", out, name="p(site, depth)")

        return call
    check_p(where, p)  # raises TypeError with the shared wording
    raise AssertionError("unreachable")  # pragma: no cover


def apply_set_dropout(
    model: nn.Module, p: Any, *, kinds: Any = None, where: Any = None
) -> list[DropoutChange]:
    """Implement :func:`dropkit.set_dropout` (see there)."""
    from dropkit.integrations import hf

    check_module("set_dropout", model)
    kind_set = check_kinds("set_dropout", kinds)
    rule = _rule(p)
    sites = [s for s in _static_sites(model) if s.control in ("module", "attribute")]
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
                "Nothing was changed; list the sites with dropkit.find_dropout(model).",
                stacklevel=3,
            )
        return []
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

"""Hugging Face config fields <-> dropout sites: which field builds which site.

``set_dropout`` must change a model's ``config`` together with its live modules,
otherwise ``save_pretrained`` / ``from_pretrained`` silently rebuilds the old
rates (and changing only the config changes nothing live). Which config field
builds which site differs per architecture (``hidden_dropout_prob``,
``attention_probs_dropout_prob``, ``resid_pdrop``, ``attention_dropout``,
``dropout_rate``, ``drop_path_rate`` scaled by depth, ``classifier_dropout``
falling back to the hidden rate, ...). Rather than a table that goes stale, the
mapping is *measured*: the model class is instantiated on the ``meta`` device
(no memory, milliseconds) once per dropout-like config field, with that field
set to a marker value, and the sites whose rate moves are the ones it builds,
with the factor ``site rate / field value``.

This is convention code that needs no ``transformers`` import: a model is a
``PreTrainedModel`` when it has ``save_pretrained`` and a ``config`` with
``to_dict`` (duck typing), and its class rebuilds itself from a config.

No paper here: bookkeeping for :func:`dropkit.set_dropout`.
"""

from __future__ import annotations

import copy
import logging
import numbers
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dropkit.sites.discover import static_sites
from dropkit.sites.record import DropoutSite, RawSite

_MARKERS = (0.3125, 0.4375)
_TOL = 1e-9


def is_pretrained(module: nn.Module) -> bool:
    """Whether ``module`` looks like a transformers ``PreTrainedModel``."""
    return hasattr(module, "save_pretrained") and hasattr(
        getattr(module, "config", None), "to_dict"
    )


def pretrained_roots(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Outermost ``PreTrainedModel`` modules inside ``model`` with their paths."""
    roots: list[tuple[str, nn.Module]] = []
    for path, module in model.named_modules():
        if any(r == "" or path.startswith(r + ".") for r, _ in roots):
            continue
        if is_pretrained(module):
            roots.append((path, module))
    return roots


@contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _meta_rates(root: nn.Module, config: Any) -> dict[tuple[str, str], tuple[float, str]]:
    with _quiet(), torch.device("meta"):
        clone = type(root)(config)
    return {(s.path, str(s.attr)): (s.p, s.kind) for s in static_sites(clone)}


def _drop_fields(config: Any, prefix: str = "") -> list[str]:
    # Dropout-like fields, dotted into sub-configs (``text_config.attention_dropout``).
    fields = []
    for key, value in config.to_dict().items():
        sub = getattr(config, key, None)
        if isinstance(value, dict) and hasattr(sub, "to_dict"):
            fields += _drop_fields(sub, f"{prefix}{key}.")
            continue
        if "drop" not in key.lower() or isinstance(value, bool):
            continue
        if value is None or isinstance(value, numbers.Real):
            fields.append(prefix + key)
    return fields


def field_owner(config: Any, field: str) -> tuple[Any, str]:
    """The (sub-)config object holding a dotted ``field`` and the leaf name."""
    *parents, leaf = field.split(".")
    for name in parents:
        config = getattr(config, name)
    return config, leaf


def get_field(config: Any, field: str) -> Any:
    """Read a dotted config field (None when unset)."""
    obj, leaf = field_owner(config, field)
    return getattr(obj, leaf, None)


@dataclass
class ConfigPlan:
    """Measured mapping from config fields to the sites of one ``PreTrainedModel``.

    Attributes:
        prefix: Path of the ``PreTrainedModel`` inside the model (``""`` = root).
        root: The ``PreTrainedModel``.
        fields: Mapping ``field -> {(relative path, attr): factor}``.
        kinds: ``field -> kind`` of the sites it builds.
        missing: Fields whose sites the live model lacks (built with rate 0,
            e.g. ConvNeXt's DropPath replaced by ``nn.Identity``).
    """

    prefix: str
    root: nn.Module
    fields: dict[str, dict[tuple[str, str], float]]
    kinds: dict[str, str]
    missing: list[str]

    def _key(self, site: DropoutSite) -> tuple[str, str] | None:
        if self.prefix and not (
            site.path == self.prefix or site.path.startswith(self.prefix + ".")
        ):
            return None
        rel = site.path[len(self.prefix) + 1 :] if self.prefix else site.path
        return rel, str(site.attr)

    def field_of(self, site: DropoutSite) -> str | None:
        """The most specific config field that builds ``site`` (fewest sites)."""
        key = self._key(site)
        best = [(len(m), f) for f, m in self.fields.items() if key is not None and key in m]
        return min(best)[1] if best else None

    def owns(self, site: DropoutSite) -> bool:
        """Whether some config field builds ``site``."""
        return self.field_of(site) is not None

    def scale(self, site: DropoutSite) -> float | None:
        """Factor between ``site``'s rate and its config field's value."""
        field = self.field_of(site)
        key = self._key(site)
        return None if field is None or key is None else self.fields[field][key]

    def solve(
        self, sites: list[DropoutSite], targets: dict[str, float]
    ) -> list[tuple[str, float | None, float, str]]:
        """Config assignments ``(field, old, new, kind)`` reproducing the new rates.

        Only fields building at least one changed site are considered. A field
        that cannot express the requested per-site rates gets the value that
        the deepest (largest factor) site asks for, and a warning names it.
        """
        by_field: dict[str, list[tuple[DropoutSite, float, float]]] = {}
        for site in sites:
            field = self.field_of(site)
            if field is None:
                continue
            want = targets.get(site.name, site.p)
            by_field.setdefault(field, []).append((site, self.fields[field][self._key(site)], want))  # type: ignore[index]
        out = []
        for field, rows in by_field.items():
            if not any(s.name in targets for s, _, _ in rows):
                continue
            values = [want / c for _, c, want in rows if c > _TOL]
            if not values:
                continue
            # the deepest site with the largest factor decides (ties: the last one)
            top = max(range(len(rows)), key=lambda i: (rows[i][1], i))
            value = rows[top][2] / rows[top][1]
            fits = all(abs(v - value) <= 1e-6 for v in values) and all(
                want <= _TOL for _, c, want in rows if c <= _TOL
            )
            if not fits or not 0.0 <= value < 1.0:
                warnings.warn(
                    f"set_dropout: expected config field {field!r} to hold the new rates of "
                    f"the {len(rows)} sites it builds, but they differ per site "
                    f"({sorted({round(w, 6) for _, _, w in rows})}). The live model has "
                    "them; save_pretrained/from_pretrained will rebuild "
                    f"{field}={min(value, 0.999999):.6g} for all of them.",
                    stacklevel=4,
                )
                value = min(max(value, 0.0), 0.999999)
            old = get_field(self.root.config, field)
            if old is None or abs(float(old) - value) > _TOL:
                out.append((field, old, value, rows[0][0].kind))
        return out


def config_plans(model: nn.Module) -> list[ConfigPlan]:
    """Measure the config -> site mapping of every ``PreTrainedModel`` in ``model``."""
    plans = []
    for prefix, root in pretrained_roots(model):
        base_config = root.config
        try:
            base = _meta_rates(root, copy.deepcopy(base_config))
        except Exception:  # noqa: BLE001 - a class that cannot rebuild from its config
            continue
        live = {(s.path, str(s.attr)) for s in static_sites(root)}
        plan = ConfigPlan(prefix, root, {}, {}, [])
        for field in _drop_fields(base_config):
            current = get_field(base_config, field)
            marker = _MARKERS[1] if current == _MARKERS[0] else _MARKERS[0]
            config = copy.deepcopy(base_config)
            setattr(*field_owner(config, field), marker)
            try:
                rates = _meta_rates(root, config)
            except Exception:  # noqa: BLE001 - the marker is not valid for this field
                continue
            moved = {
                key: rate / marker
                for key, (rate, _) in rates.items()
                if abs(rate - base.get(key, (0.0, ""))[0]) > _TOL
            }
            if moved:
                plan.fields[field] = moved
                plan.kinds[field] = rates[next(iter(moved))][1]
                if not live & moved.keys():
                    plan.missing.append(field)
        plans.append(plan)
    return plans


def config_sites(model: nn.Module) -> list[RawSite]:
    """Raw ``control="config"`` sites: config fields whose sites the model lacks."""
    return config_sites_of(config_plans(model))


def config_sites_of(plans: list[ConfigPlan]) -> list[RawSite]:
    """Raw config-only sites of already measured plans."""
    rows: list[RawSite] = []
    for plan in plans:
        for field in plan.missing:
            value = get_field(plan.root.config, field)
            p = float(value) if value is not None else 0.0
            rows.append(RawSite(plan.prefix, plan.kinds[field], p, False, "config", field, ()))
    return rows

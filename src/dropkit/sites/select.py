r"""The one site selector, ``sites=``, shared by every function that picks dropout sites.

:func:`dropkit.set_dropout`, :class:`dropkit.training.DropoutScheduler`,
:func:`dropkit.mc_mode`, :func:`dropkit.mc_predict` and
:func:`dropkit.fast_dropout` take the same ``sites=`` argument (a
:data:`SiteSelector`): ``None`` for every site, or one or a list (the union) of

* a site kind from :data:`~dropkit.sites.discover.KINDS` (``"attention"``);
* ``"head"``: the classifier head (see :mod:`dropkit.sites.heads`);
* ``"last:k"`` / ``"blocks:i-j"``: the sites of the model's last ``k`` repeated
  blocks, or of blocks ``i`` to ``j``, and every site after the blocks (see
  :mod:`dropkit.sites.blocks`);
* a glob over the site's path or name (``"encoder.layer.1*"``);
* a compiled regex, searched in the site's name (``re.compile(r"^2\.")``);
* a predicate ``fn(site) -> bool``;
* a :class:`~dropkit.sites.record.DropoutSite` (e.g. a functional site from
  ``find_dropout(model, probe_inputs=...)``).

The former ``kinds=`` / ``where=`` arguments of ``set_dropout`` and
``DropoutScheduler`` select the intersection of both; :func:`resolve_aliases`
keeps them working for one release with a ``DeprecationWarning``.

No paper here: argument handling.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from torch import nn

from dropkit._validation import check_callable
from dropkit.sites.blocks import check_depth_spec, is_depth_spec, select_depth
from dropkit.sites.discover import KINDS, static_sites
from dropkit.sites.heads import head_paths, is_head
from dropkit.sites.record import DropoutSite

#: One entry of a selector: a kind, ``"head"``, ``"last:k"`` / ``"blocks:i-j"``,
#: a glob, a compiled regex, a predicate on the site, or a site.
SiteEntry: TypeAlias = str | re.Pattern[str] | DropoutSite | Callable[[DropoutSite], bool]
#: The ``sites=`` argument: one entry or an iterable of entries (their union).
SiteSelector: TypeAlias = SiteEntry | Iterable[SiteEntry]

#: The deprecated ``where=`` argument: a glob, a compiled regex or a predicate.
Where: TypeAlias = str | re.Pattern[str] | Callable[[DropoutSite], bool]

_SELECTOR_HELP = (
    "Pass e.g. sites='head' or sites=['attention', 'classifier.*']; known kinds: "
    + ", ".join(KINDS)
    + "."
)


class _Both:
    """The deprecated ``kinds=`` and ``where=`` together: sites matching both."""

    def __init__(self, kinds: Any, kind_set: frozenset[str] | None, where: Where | None) -> None:
        self.kinds = kinds
        self.kind_set = kind_set
        self.where = where

    def __call__(self, site: DropoutSite) -> bool:
        kind_ok = self.kind_set is None or site.kind in self.kind_set
        return kind_ok and match_where(self.where, site)

    def __repr__(self) -> str:
        return f"where={self.where!r} and kinds={self.kinds!r}"


def _entries(caller: str, sites: Any) -> list[Any]:
    """Split ``sites`` into entries, checking each one's type (no model needed)."""
    single = isinstance(sites, (str, re.Pattern, DropoutSite)) or callable(sites)
    if not single and (not isinstance(sites, Iterable) or isinstance(sites, (bytes, Mapping))):
        raise TypeError(
            f"{caller}: expected sites to be None, 'head', a kind, a path pattern, a "
            f"predicate, DropoutSite objects or a list of those, but got {sites!r}. "
            + _SELECTOR_HELP
        )
    entries = [sites] if single else list(sites)
    for entry in entries:
        if isinstance(entry, (DropoutSite, re.Pattern, _Both)):
            continue
        if isinstance(entry, str):
            if is_depth_spec(entry):
                check_depth_spec(caller, entry)
            continue
        if callable(entry):
            check_callable(caller, entry, "sites", 1, "sites=lambda site: site.p > 0")
            continue
        raise TypeError(
            f"{caller}: expected sites to be None, 'head', a kind, a path pattern, a "
            f"predicate or DropoutSite objects, but got {entry!r}. "
            f"Known kinds: {', '.join(KINDS)}."
        )
    return entries


def check_sites(caller: str, sites: SiteSelector | None) -> None:
    """Raise TypeError / ValueError unless ``sites`` is a well-formed selector.

    What needs the model (does an entry select anything, are there repeated
    blocks for ``"last:k"``) is checked when the sites are selected.
    """
    if sites is not None:
        _entries(caller, sites)


def select_sites(
    model: nn.Module,
    sites: SiteSelector | None,
    caller: str = "mc_mode",
    *,
    found: list[DropoutSite] | None = None,
    strict: bool = True,
    blocks_of: list[DropoutSite] | None = None,
) -> list[DropoutSite]:
    """Resolve a ``sites`` selector to the sites of ``model`` it picks.

    Args:
        model: The model.
        sites: The selector (see the module docstring); None picks ``found``.
        caller: Name used in error messages.
        found: The candidate sites (default: ``static_sites(model)``).
        strict: Raise ValueError when an entry selects no site (``mc_mode``);
            otherwise an empty selection is returned (``set_dropout`` warns).
        blocks_of: The sites that locate the repeated blocks for
            ``"last:k"`` / ``"blocks:i-j"`` (default: ``found``).

    Returns:
        The union of the entries' sites, one per name, in the order of
        ``found`` (sites given as objects and absent from ``found`` last).

    Raises:
        TypeError: If ``sites`` or an entry has a wrong type.
        ValueError: If a depth selector is malformed, out of range or the model
            has no repeated blocks; with ``strict``, if an entry selects no site.
    """
    if found is None:
        found = static_sites(model)
    if sites is None:
        return list(found)
    entries = _entries(caller, sites)
    by_name = {s.name: s for s in found}
    heads: list[str] | None = None
    if any(e == "head" or is_depth_spec(e) for e in entries if isinstance(e, str)):
        heads = head_paths(model)
    chosen: set[str] = set()
    given: dict[str, DropoutSite] = {}
    for entry in entries:
        picked = _pick(model, found, entry, caller, heads, blocks_of)
        if strict and not picked:
            raise ValueError(
                f"{caller}: expected sites entry {entry!r} to select at least one of the "
                f"model's {len(found)} dropout sites, but it selects none. Known kinds: "
                f"{', '.join(KINDS)}; list the sites with dropkit.find_dropout(model)."
            )
        for site in picked:
            chosen.add(site.name)
            if site.name not in by_name:
                given.setdefault(site.name, site)
    return [s for s in found if s.name in chosen] + list(given.values())


def _pick(
    model: nn.Module,
    found: list[DropoutSite],
    entry: Any,
    caller: str,
    heads: list[str] | None,
    blocks_of: list[DropoutSite] | None,
) -> list[DropoutSite]:
    if isinstance(entry, DropoutSite):
        # the model's own record when it has one (current rate), else the site given
        same = [s for s in found if s.name == entry.name and s.module is entry.module]
        return same or [entry]
    if entry == "head":
        return [s for s in found if is_head(model, s, heads)]
    if isinstance(entry, str) and is_depth_spec(entry):
        return select_depth(
            model, found, entry, caller, lambda s: is_head(model, s, heads), blocks_of=blocks_of
        )
    if isinstance(entry, str) and entry in KINDS:
        return [s for s in found if s.kind == entry]
    return [s for s in found if match_where(entry, s)]


def kinds_named(sites: SiteSelector | None) -> frozenset[str]:
    """The site kinds that ``sites`` names (entries that are kind names)."""
    if sites is None:
        return frozenset()
    if isinstance(sites, _Both):
        return sites.kind_set or frozenset()
    items = [sites] if isinstance(sites, str) or not isinstance(sites, Iterable) else list(sites)
    names: set[str] = set()
    for item in items:
        if isinstance(item, str) and item in KINDS:
            names.add(item)
        elif isinstance(item, _Both) and item.kind_set:
            names |= item.kind_set
    return frozenset(names)


def describe(sites: SiteSelector | None) -> str:
    """How a message names the selector: ``sites=...``, or the deprecated pair."""
    if isinstance(sites, _Both):
        return repr(sites)
    return f"sites={sites!r}"


def resolve_aliases(
    caller: str,
    sites: SiteSelector | None,
    kinds: str | Iterable[str] | None,
    where: Where | None,
    *,
    stacklevel: int = 3,
) -> SiteSelector | None:
    """Turn the deprecated ``kinds=`` / ``where=`` into a ``sites=`` selector.

    Without them, ``sites`` is returned as is. With them, they are validated
    (their own messages), a ``DeprecationWarning`` names ``sites=``, and the
    selector picks what they picked: sites of the kinds AND matching ``where``.

    Raises:
        TypeError: If ``sites`` is given together with ``kinds`` or ``where``,
            or an alias has a wrong type.
        ValueError: If ``kinds`` names an unknown kind.
    """
    if kinds is None and where is None:
        return sites
    given = " and ".join(
        f"{name}={value!r}"
        for name, value in (("kinds", kinds), ("where", where))
        if value is not None
    )
    if sites is not None:
        raise TypeError(
            f"{caller}: expected sites= alone, but got sites={sites!r} together with "
            f"{given}. kinds= and where= are deprecated aliases of sites=: pass only sites= "
            "(a list selects the union of its entries; use a predicate such as "
            "sites=lambda site: site.kind == 'attention' and site.path.startswith('encoder') "
            "for an intersection)."
        )
    kind_set = check_kinds(caller, kinds)
    check_where(caller, where)
    names = " and ".join(n for n, v in (("kinds=", kinds), ("where=", where)) if v is not None)
    warnings.warn(
        f"{caller}: {names} {'is' if ' and ' not in names else 'are'} deprecated; use sites= "
        "instead (it takes kind names, 'head', globs, regexes, predicates and lists of "
        "those).",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return _Both(kinds, kind_set, where)


def check_kinds(caller: str, kinds: Any) -> frozenset[str] | None:
    """Validate a kind or an iterable of kinds against :data:`KINDS`."""
    if kinds is None:
        return None
    if not isinstance(kinds, str) and not isinstance(kinds, Iterable):
        raise TypeError(
            f"{caller}: expected kinds to be None, a site kind or a list of kinds, but got "
            f"{kinds!r}. Pass e.g. kinds='attention' or kinds=['element', 'attention']; "
            f"known kinds: {', '.join(KINDS)}."
        )
    items = [kinds] if isinstance(kinds, str) else list(kinds)
    for kind in items:
        if not isinstance(kind, str) or kind not in KINDS:
            raise ValueError(
                f"{caller}: expected a site kind, but got {kind!r}. "
                f"Known kinds: {', '.join(KINDS)}."
            )
    return frozenset(items)


def check_where(caller: str, where: Any, name: str = "where") -> None:
    """Raise TypeError unless ``where`` is None, a glob, a regex or a one-argument predicate."""
    if where is None or isinstance(where, (str, re.Pattern)):
        return
    if not callable(where):
        raise TypeError(
            f"{caller}: expected {name} to be None, a glob string, a compiled regex or a "
            f"predicate on the site, but got {where!r}. Pass e.g. {name}='encoder.*' or "
            f"{name}=lambda site: site.p > 0."
        )
    check_callable(caller, where, name, 1, f"{name}=lambda site: site.p > 0")


def match_where(where: Where | None, site: DropoutSite) -> bool:
    """Whether ``site`` matches a glob on its path or name, a regex, or a predicate."""
    if where is None:
        return True
    if isinstance(where, str):
        return fnmatch.fnmatchcase(site.path, where) or fnmatch.fnmatchcase(site.name, where)
    if isinstance(where, re.Pattern):
        return where.search(site.name) is not None
    return bool(where(site))

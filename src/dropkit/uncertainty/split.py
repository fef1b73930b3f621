"""Split a model into a deterministic prefix (run once) and a stochastic rest (run T times).

When every active dropout site lies after a deterministic part, MC dropout only
needs that part once per input; the ``T`` samples re-run the rest. Four splits:

* ``nn.Sequential``: cut before the first child holding an active site
  (recursing into nested ``Sequential`` children);
* Hugging Face ``*ForSequenceClassification`` / ``*ForTokenClassification`` (any
  model with a ``base_model`` backbone) whose active sites all lie outside the
  backbone, e.g. ``sites="head"``: the backbone (BERT's pooler included) runs once
  and its output is replayed, so the model's own head code (pooling, dropout,
  classifier) runs ``T`` times without the architecture being re-implemented;
* with a ``sites="last:k"`` / ``"blocks:i-j"`` selector, any model with repeated
  blocks whose active sites all lie in its last blocks or after them: the first
  blocks run once (:mod:`dropkit.uncertainty.depth`);
* an explicit ``features`` callable and ``head`` module, for any model.

The idea is the "last-layer" MC dropout of Gal and Ghahramani (2016) applied
wherever the graph allows, made exact by the per-sample masks of
:mod:`dropkit.uncertainty.masks`.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from dropkit._call import call_model
from dropkit.uncertainty._plan import Plan, _Captured, _site_modules


def map_rows(obj: Any, n: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor in ``obj`` whose dim 0 has ``n`` rows.

    Walks tensors, mappings (Hugging Face ``ModelOutput`` / ``BatchEncoding``
    keep their type when possible), lists and tuples; anything else is returned
    unchanged.
    """
    if isinstance(obj, torch.Tensor):
        return fn(obj) if obj.dim() >= 1 and obj.shape[0] == n else obj
    if isinstance(obj, Mapping):
        items = {k: map_rows(v, n, fn) for k, v in obj.items()}
        try:
            return type(obj)(**items)
        except TypeError:
            return items
    if isinstance(obj, (list, tuple)):
        mapped = [map_rows(v, n, fn) for v in obj]
        return type(obj)(mapped) if type(obj) in (list, tuple) else type(obj)(*mapped)
    return obj


def replicate(obj: Any, n: int, k: int) -> Any:
    """Stack ``k`` copies of every ``n``-row tensor on dim 0 (sample-major).

    Shape:
        - Input tensors: ``(n, ...)``.
        - Output tensors: ``(k * n, ...)``; rows ``[j*n, (j+1)*n)`` are copy ``j``.
    """
    if k == 1:
        return obj
    return map_rows(obj, n, lambda t: t.repeat(k, *([1] * (t.dim() - 1))))


def take_rows(obj: Any, n: int, rows: torch.Tensor) -> Any:
    """Keep only ``rows`` of every ``n``-row tensor in ``obj``."""
    return map_rows(obj, n, lambda t: t.index_select(0, rows.to(t.device)))


def sites_inside(sites: Iterable[Any], root: Any) -> tuple[list[str], list[str]]:
    """Partition site paths into those inside ``root``'s subtree and those outside.

    A site with no module (unknown location) counts as inside.
    """
    owned = {id(m) for m in root.modules()} if isinstance(root, nn.Module) else set()
    inside, outside = [], []
    for site in sites:
        mods = _site_modules(site)
        path = str(getattr(site, "path", "?"))
        if not mods or any(id(m) in owned for m in mods):
            inside.append(path)
        else:
            outside.append(path)
    return inside, outside


def _no_split(model: nn.Module) -> Plan:
    return Plan("none", lambda x: x, lambda x: call_model(model, x), [model], "full model")


def _split_sequential(
    seq: nn.Sequential, site_ids: set[int]
) -> tuple[list[nn.Module], list[nn.Module]] | None:
    children = list(seq.children())
    for i, child in enumerate(children):
        if any(id(m) in site_ids for m in child.modules()):
            if isinstance(child, nn.Sequential):
                inner = _split_sequential(child, site_ids)
                if inner is not None:
                    return children[:i] + inner[0], inner[1] + children[i + 1 :]
            return children[:i], children[i:]
    return None


def _sequential_plan(model: nn.Sequential, sites: list[Any]) -> Plan | None:
    ids: set[int] = set()
    for site in sites:
        mods = _site_modules(site)
        if not mods:
            return None
        ids.update(id(m) for m in mods)
    cut = _split_sequential(model, ids)
    if cut is None or not cut[0]:
        return None
    head, rest = nn.Sequential(*cut[0]), nn.Sequential(*cut[1])
    return Plan(
        "sequential",
        head,
        rest,
        [rest],
        f"Sequential cut after {len(cut[0])} of {len(cut[0]) + len(cut[1])} leading modules",
    )


def _backbone_plan(model: nn.Module, sites: list[Any]) -> Plan | None:
    backbone = getattr(model, "base_model", None)
    if not isinstance(backbone, nn.Module) or backbone is model:
        return None
    inside, _ = sites_inside(sites, backbone)
    if inside:
        return None
    name = str(getattr(model, "base_model_prefix", "base_model"))

    def patched(replacement: Callable[..., Any]) -> Any:
        had = "forward" in backbone.__dict__
        old = backbone.__dict__.get("forward")
        backbone.forward = replacement  # type: ignore[method-assign]
        return had, old

    def restore(saved: Any) -> None:
        had, old = saved
        if had:
            backbone.forward = old  # type: ignore[method-assign]
        else:
            backbone.__dict__.pop("forward", None)

    original = backbone.forward

    def capture(*args: Any, **kwargs: Any) -> Any:
        raise _Captured(original(*args, **kwargs))

    def prefix(inputs: Any) -> Any:
        saved = patched(capture)
        try:
            call_model(model, inputs)
        except _Captured as got:
            return (got.value, inputs)
        finally:
            restore(saved)
        raise RuntimeError(
            f"mc_predict: expected {type(model).__name__} to call its backbone {name!r}, "
            "but the forward finished without it. Pass reuse_prefix=False or an explicit "
            "features=/head= split."
        )

    def run(state: Any) -> Any:
        cached, inputs = state
        saved = patched(lambda *a, **kw: cached)
        try:
            return call_model(model, inputs)
        finally:
            restore(saved)

    others = [m for m in model.modules() if m is not backbone]
    return Plan("backbone", prefix, run, others, f"backbone {name!r} run once")


def make_plan(
    model: nn.Module,
    sites: list[Any],
    *,
    features: Callable[..., Any] | None = None,
    head: Callable[..., Any] | None = None,
    reuse_prefix: bool = True,
    blocks: bool = False,
) -> Plan:
    """Choose how to split ``model`` for the active ``sites``.

    Args:
        model: The model under ``mc_mode``.
        sites: The active (enabled) sites.
        features: Explicit deterministic part (``inputs -> features``).
        head: Explicit stochastic part (``features -> output``).
        reuse_prefix: Try the automatic splits; ``False`` runs the full model.
        blocks: Also try the cut between repeated blocks (asked for by a
            ``"last:k"`` / ``"blocks:i-j"`` selector): it assumes each block reads
            only the previous block's output.

    Returns:
        The :class:`Plan`.

    Raises:
        ValueError: If an explicit ``features`` module holds an active site, or
            an explicit ``head`` module misses one.
    """
    if features is not None and head is not None:
        if isinstance(features, nn.Module):
            inside, _ = sites_inside(sites, features)
            if inside:
                raise ValueError(
                    "mc_predict: expected features= to hold no active dropout site, but got "
                    f"{inside!r}. Move those layers into head= or exclude them with sites=."
                )
        if isinstance(head, nn.Module):
            _, outside = sites_inside(sites, head)
            if outside:
                raise ValueError(
                    "mc_predict: expected every active dropout site inside head=, but got "
                    f"{outside!r} outside it. Pass sites= selecting the head's sites only."
                )
        mods = [head] if isinstance(head, nn.Module) else []
        return Plan(
            "explicit",
            lambda x: call_model(features, x),
            lambda f: call_model(head, f),
            mods,
            "explicit features/head",
        )
    if not reuse_prefix:
        return _no_split(model)
    if isinstance(model, nn.Sequential):
        plan = _sequential_plan(model, sites)
        if plan is not None:
            return plan
    plan = _backbone_plan(model, sites)
    if plan is None and blocks:
        from dropkit.uncertainty.depth import blocks_plan

        plan = blocks_plan(model, sites)
    return plan if plan is not None else _no_split(model)

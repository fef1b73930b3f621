"""Prefix reuse at any depth: run the first blocks once, the stochastic rest ``T`` times.

When every active dropout site lies in the last blocks of a model's repeated
block group (see :mod:`dropkit.sites.blocks`; ``sites="last:k"``) or after it, the
output of the last deterministic block depends only on the inputs. The prefix
forward runs the model once and stops, by a forward hook, as soon as block
``s - 1`` returns; that output is the state that gets replicated. Each
stochastic call runs the model's own forward again with blocks ``0 .. s - 1``
replaced by the cached output, so block ``s`` receives what it would have
received, and everything the model builds around its blocks (attention and
causal masks, padding, ``position_ids``, rotary embeddings, T5's relative
position bias, passed along with the cached block output) is rebuilt by the
model's own code from the replicated inputs. Only the code outside the blocks
(embeddings, mask building: linear in the hidden size) runs ``T`` times besides
the last ``k`` blocks and the head.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from torch import nn

from dropkit._call import call_model
from dropkit.sites.blocks import Blocks, find_blocks
from dropkit.sites.discover import static_sites
from dropkit.uncertainty._plan import Plan, _Captured, _site_modules

__all__ = ["blocks_plan"]


# Cached blocks answer only the thread that cached them: other threads running the
# same shared model (concurrent mc_predict calls) get the block's own forward. The
# wrapper is installed by the first caller and removed by the last (reference count).
_LOCK = threading.Lock()
_PER_BLOCK = ("output_hidden_states", "output_attentions")
_PATCHED: dict[int, list[Any]] = {}  # id(block) -> [holders, had own forward, it]
_LOCAL = threading.local()


def _cached() -> dict[int, Any]:
    table = getattr(_LOCAL, "table", None)
    if table is None:
        table = _LOCAL.table = {}
    return table


def _enter(blocks: tuple[nn.Module, ...], cached: Any) -> None:
    table = _cached()
    for b in blocks:
        table[id(b)] = cached
    with _LOCK:
        for b in blocks:
            entry = _PATCHED.get(id(b))
            if entry is not None:
                entry[0] += 1
                continue
            _PATCHED[id(b)] = [1, "forward" in b.__dict__, b.__dict__.get("forward")]
            original = b.forward

            def forward(*args: Any, _key: int = id(b), _own: Any = original, **kw: Any) -> Any:
                mine = _cached()
                return mine[_key] if _key in mine else _own(*args, **kw)

            b.forward = forward  # type: ignore[method-assign]


def _exit(blocks: tuple[nn.Module, ...]) -> None:
    table = _cached()
    for b in blocks:
        table.pop(id(b), None)
    with _LOCK:
        for b in blocks:
            entry = _PATCHED[id(b)]
            entry[0] -= 1
            if entry[0]:
                continue
            del _PATCHED[id(b)]
            if entry[1]:
                b.forward = entry[2]  # type: ignore[method-assign]
            else:
                b.__dict__.pop("forward", None)


def _first_stochastic(model: nn.Module, blocks: Blocks, sites: list[Any]) -> int | None:
    """Index of the first block holding an active site, or None when the cut is unsafe.

    Unsafe: a site with no module, or one that runs before the block group (its
    dropout would be overwritten by the cached block output).
    """
    order = {id(m): i for i, (_, m) in enumerate(model.named_modules())}
    owner = {id(m): i for i, b in enumerate(blocks.modules) for m in b.modules()}
    first = len(blocks.modules)
    for site in sites:
        mods = _site_modules(site)
        if not mods:
            return None
        inside = [owner[id(m)] for m in mods if id(m) in owner]
        if inside:
            first = min(first, min(inside))
        elif getattr(site, "path", None) == "" and getattr(site, "control", "") == "attribute":
            continue  # a rate read by the root's own forward (timm's head drop_rate)
        elif not all(order.get(id(m), -1) > blocks.end for m in mods):
            return None
    return first


def _after(model: nn.Module, blocks: Blocks) -> list[nn.Module]:
    """The top-most modules after the block group (pooler, norm, head)."""
    named = list(model.named_modules())
    order = {p: i for i, (p, _) in enumerate(named)}
    out = []
    for i, (path, mod) in enumerate(named):
        if i <= blocks.end or not path:
            continue
        parent = path.rpartition(".")[0]
        if order.get(parent, 0) <= blocks.end:
            out.append(mod)
    return out


def blocks_plan(model: nn.Module, sites: list[Any]) -> Plan | None:
    """A :class:`~dropkit.uncertainty._plan.Plan` that caches the first blocks, or None.

    None when the model has no repeated blocks, when the first active site lies
    in block 0, or when an active site's module comes before the blocks. If the
    first prefix forward calls an active site's module before the cut (one
    module used before and after the blocks), the plan turns itself into a
    full-model plan (``kind="none"``) for that call.
    """
    blocks = find_blocks(model, static_sites(model))
    if blocks is None:
        return None
    s = _first_stochastic(model, blocks, sites)
    if not s:
        return None
    cut, skipped = blocks.modules[s - 1], blocks.modules[:s]
    where = f"{blocks.path}.{blocks.names[s - 1]}" if blocks.path else blocks.names[s - 1]

    watched = [m for site in sites for m in _site_modules(site) if m is not model]
    plan = Plan("blocks", lambda x: x, lambda x: x)
    early: list[str] = []

    owner: list[int] = []  # hooks are the module's, for every thread: act in ours only

    def stop(_m: nn.Module, _args: Any, out: Any) -> None:
        if threading.get_ident() in owner:
            raise _Captured(out)

    def unsafe(mod: nn.Module, _args: Any) -> None:
        # An active site called before the cut (T5's one ``dropout`` module runs
        # after the embeddings and after the last block): caching would freeze its
        # mask, so this call and every later one run the full model.
        if threading.get_ident() in owner:
            raise _Captured(mod)

    def full_model(reason: str) -> None:
        early.append(reason)
        plan.kind = "none"
        plan.modules = [model]
        plan.detail = f"full model: {reason}"

    def prefix(inputs: Any) -> Any:
        if early:
            return (None, inputs)
        asked = [k for k in _PER_BLOCK if isinstance(inputs, Mapping) and inputs.get(k)]
        if asked:  # the cached blocks would report copies of one block's output
            full_model(f"{asked[0]}=True asks for every block's output")
            return (None, inputs)
        owner[:] = [threading.get_ident()]
        handles = [cut.register_forward_hook(stop)]
        handles += [m.register_forward_pre_hook(unsafe) for m in watched]
        try:
            call_model(model, inputs)
        except _Captured as got:
            if not isinstance(got.value, nn.Module) or got.value not in watched:
                return (got.value, inputs)
            names = {id(m): p for p, m in model.named_modules()}
            full_model(
                f"active site in {names.get(id(got.value), '?')!r} runs before block {where!r}"
            )
            return (None, inputs)
        finally:
            for h in handles:
                h.remove()
        raise RuntimeError(
            f"mc_predict: expected {type(model).__name__} to call its block {where!r}, "
            "but the forward finished without it. Pass reuse_prefix=False or an explicit "
            "features=/head= split."
        )

    def run(state: Any) -> Any:
        cached, inputs = state
        if cached is None:
            return call_model(model, inputs)
        _enter(skipped, cached)
        try:
            return call_model(model, inputs)
        finally:
            _exit(skipped)

    plan.prefix, plan.run = prefix, run
    plan.modules = [*blocks.modules[s:], *_after(model, blocks)]
    plan.detail = (
        f"blocks 0-{s - 1} of {len(blocks.modules)} under {blocks.path or 'the root'!r} run once"
    )
    return plan

"""Find a model's repeated blocks from its structure, for depth-selected MC dropout.

The blocks are the largest group of sibling children of one class (the layers of
an ``nn.ModuleList`` or ``nn.Sequential``, or same-class stages of a parent such
as timm ResNet's ``layer1`` .. ``layer4``) whose members hold dropout sites. No
table of architecture names is consulted: BERT's ``encoder.layer``, GPT-2's
``h``, Llama's ``layers``, T5's ``block`` and timm ViT's ``blocks`` are all found
the same way. ``sites="last:k"`` selects the sites of the last ``k`` blocks and
every site after the block group (pooler, head); ``"blocks:i-j"`` blocks ``i`` to
``j`` (0-based, inclusive) and the sites after the group.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from dropkit.sites.record import DropoutSite

_SPEC = re.compile(r"^(?:last:(\d+)|blocks:(\d+)-(\d+))$")


@dataclass(frozen=True)
class Blocks:
    """The repeated blocks of a model.

    Attributes:
        path: Dotted path of the parent holding the blocks.
        names: Child names of the blocks, in order.
        modules: The block modules, in order.
        end: Index in ``named_modules()`` order of the last module inside the
            group; sites after it are "after the blocks" (pooler, head).
        start: Index in ``named_modules()`` order of the first block.
    """

    path: str
    names: tuple[str, ...]
    modules: tuple[nn.Module, ...]
    start: int
    end: int


def is_depth_spec(spec: object) -> bool:
    """Whether ``spec`` is a ``"last:..."`` or ``"blocks:..."`` selector string."""
    return isinstance(spec, str) and spec.startswith(("last:", "blocks:"))


def find_blocks(model: nn.Module, sites: list[DropoutSite]) -> Blocks | None:
    """Return the largest group of same-class sibling blocks holding sites, or None.

    A group counts members that contain a site strictly inside them (a dropout
    module is not a block of itself); it needs at least 2 such members. Ties go
    to the shallowest parent, then to the first in module order.
    """
    held: set[int] = set()
    for site in sites:
        for m in (site.module, *site.gates):
            if m is not None:
                held.add(id(m))
    order = {id(m): i for i, (_, m) in enumerate(model.named_modules())}
    best: tuple[int, int, int] | None = None
    found: Blocks | None = None
    for path, parent in model.named_modules():
        groups: dict[type, list[tuple[str, nn.Module]]] = {}
        for name, child in parent.named_children():
            groups.setdefault(type(child), []).append((name, child))
        for members in groups.values():
            if len(members) < 2:
                continue
            holding = [
                (n, c) for n, c in members if any(id(m) in held for m in c.modules() if m is not c)
            ]
            if len(holding) < 2:
                continue
            depth = path.count(".") + 1 if path else 0
            rank = (len(members), -depth, -order[id(parent)])
            if best is None or rank > best:
                best = rank
                last_inner = max(order[id(m)] for _, c in members for m in c.modules())
                found = Blocks(
                    path=path,
                    names=tuple(n for n, _ in members),
                    modules=tuple(c for _, c in members),
                    start=order[id(members[0][1])],
                    end=last_inner,
                )
    return found


def _no_blocks(caller: str, spec: str, model: nn.Module) -> ValueError:
    return ValueError(
        f"{caller}: expected a model with repeated blocks for sites={spec!r} (an "
        "nn.ModuleList, nn.Sequential or parent with at least 2 children of one class "
        f"that hold dropout sites), but got {type(model).__name__} with none. Select "
        "sites by path (sites='layers.3.*'), or pass features= and head= to mc_predict "
        "to split the model yourself."
    )


def check_depth_spec(caller: str, spec: str) -> re.Match[str]:
    """Parse a ``"last:k"`` / ``"blocks:i-j"`` selector.

    Raises:
        ValueError: If it is malformed.
    """
    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(
            f"{caller}: expected sites='last:k' or 'blocks:i-j' with integers k >= 0 and "
            f"0 <= i <= j, but got {spec!r}. Pass e.g. sites='last:2' or "
            "sites='blocks:0-3'."
        )
    return match


def select_depth(
    model: nn.Module,
    found: list[DropoutSite],
    spec: str,
    caller: str,
    is_head: Callable[[DropoutSite], bool],
    *,
    blocks_of: list[DropoutSite] | None = None,
) -> list[DropoutSite]:
    """Resolve a ``"last:k"`` / ``"blocks:i-j"`` selector to sites (module order).

    Sites after the block group in module order are included, and so are head
    sites held by the root (timm's ``drop_rate`` attribute), as ``is_head`` says.
    The blocks are located from ``blocks_of`` (default: ``found``).

    Raises:
        ValueError: If the selector is malformed, out of range, or the model has
            no repeated blocks.
    """
    match = check_depth_spec(caller, spec)
    blocks = find_blocks(model, found if blocks_of is None else blocks_of)
    if blocks is None:
        raise _no_blocks(caller, spec, model)
    n = len(blocks.modules)
    if match.group(1) is not None:
        k = int(match.group(1))
        if k > n:
            raise ValueError(
                f"{caller}: expected k <= {n} (the blocks under {blocks.path or 'the root'!r}) "
                f"in sites='last:k', but got {spec!r}. Pass sites='last:{n}' for every block."
            )
        lo, hi = n - k, n - 1
    else:
        lo, hi = int(match.group(2)), int(match.group(3))
        if lo > hi or hi >= n:
            raise ValueError(
                f"{caller}: expected 0 <= i <= j < {n} (the blocks under "
                f"{blocks.path or 'the root'!r}) in sites='blocks:i-j', but got {spec!r}. "
                f"Pass e.g. sites='blocks:0-{n - 1}'."
            )
    inside = {id(m) for b in blocks.modules[lo : hi + 1] for m in b.modules()}
    order = {id(m): i for i, (_, m) in enumerate(model.named_modules())}
    picked = []
    for site in found:
        mods = [m for m in (site.module, *site.gates) if m is not None]
        if any(id(m) in inside for m in mods):
            picked.append(site)
        elif mods and all(order.get(id(m), -1) > blocks.end for m in mods):
            picked.append(site)
        elif site.path == "" and is_head(site):
            picked.append(site)
    return picked

"""The record of how one MC call runs, shared by the splitters.

:mod:`dropkit.uncertainty.split` (``Sequential``, backbone and explicit
splits, and the choice between them) and :mod:`dropkit.uncertainty.depth`
(the cut between repeated blocks) both build a :class:`Plan`, stop a forward
with :class:`_Captured` and read a site's modules with :func:`_site_modules`;
they live here so that neither of the two imports the other for them (the
chooser in ``split`` imports ``depth``, never the reverse).

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


class _Captured(Exception):
    """Raised inside a forward to stop it once the backbone output is captured."""

    def __init__(self, value: Any) -> None:
        super().__init__("backbone output captured")
        self.value = value


def _site_modules(site: Any) -> list[nn.Module]:
    mods = [
        m for m in (getattr(site, "module", None), *getattr(site, "gates", ())) if m is not None
    ]
    return mods


@dataclass
class Plan:
    """How one MC call runs: a deterministic ``prefix`` and a stochastic ``run``.

    Attributes:
        kind: ``"none"``, ``"sequential"``, ``"backbone"``, ``"blocks"`` or
            ``"explicit"``.
        prefix: ``inputs -> state``; the state is what gets replicated.
        run: ``state -> raw model output`` for a (replicated) state.
        modules: Modules of the stochastic part (for the memory estimate).
        detail: Human-readable description of the cut (for ``extras``).
    """

    kind: str
    prefix: Callable[[Any], Any]
    run: Callable[[Any], Any]
    modules: list[nn.Module] = field(default_factory=list)
    detail: str = ""

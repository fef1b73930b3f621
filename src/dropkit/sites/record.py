"""The typed records of the site machinery: a site, a raw site, a change.

Discovery (:mod:`~dropkit.sites.discover`), the probe
(:mod:`~dropkit.sites.probe`) and the Hugging Face config mapping
(:mod:`~dropkit.sites.hf_config`) each report :class:`RawSite` records; one
function (:func:`dropkit.sites.discover.with_depth`) turns a list of them into
the public :class:`DropoutSite` records, adding the block depth that only the
whole list can tell. :func:`dropkit.set_dropout` reports each rate it wrote as
a :class:`DropoutChange`.

No paper here: plain records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

#: How a site's rate is controlled (see :attr:`DropoutSite.control`).
Control = Literal["module", "attribute", "config", "functional"]


@dataclass(frozen=True)
class RawSite:
    """A site as one finder reports it, before depths are known.

    Attributes:
        path: See :attr:`DropoutSite.path`.
        kind: See :attr:`DropoutSite.kind`.
        p: See :attr:`DropoutSite.p`.
        active: See :attr:`DropoutSite.active`.
        control: See :attr:`DropoutSite.control`.
        attr: See :attr:`DropoutSite.attr`.
        gates: The modules whose ``training`` flag switches the site, the
            deciding one first; for a module site the dropout module is last.
    """

    path: str
    kind: str
    p: float
    active: bool
    control: Control
    attr: str | None
    gates: tuple[nn.Module, ...]


@dataclass(frozen=True)
class DropoutSite:
    """One place where a model can drop at random.

    Attributes:
        path: Dotted module path (``""`` for the root) of the module that holds
            the rate (``control="module"`` / ``"attribute"``), or of the module
            that made the call (``"functional"``).
        kind: Site kind from the shared vocabulary (``element``, ``attention``,
            ``spatial``, ``path``, ``layer``, ...).
        p: Current drop probability.
        active: Whether the site would drop in the model's current mode.
        control: How the rate is controlled: ``"module"`` (a dropout module's
            rate attribute), ``"attribute"`` (a float attribute read at forward
            time), ``"config"`` (a config field only) or ``"functional"`` (a call
            seen by the probe, with no knob to set).
        attr: Name of the rate attribute (``p``, ``drop_prob``,
            ``attention_dropout``, ...) or, for config sites, the config field;
            None for functional sites.
        gate_paths: Paths of the modules whose ``training`` flag switches the
            site; the first one is the flag that decides ``active``.
        depth: Ordinal of the block holding the site among the blocks that hold
            sites (block = path up to its last integer component, the site's
            own name excluded), None outside blocks.
        depth_fraction: ``depth / (blocks - 1)`` in ``[0, 1]``; 0 before the
            first block (embeddings), 1 after the last one (heads).
        layer: Last integer component of the block path (the layer index), or None.
        module: The module holding the rate (not compared, not shown).
        gates: The modules named by ``gate_paths`` (not compared, not shown).
    """

    path: str
    kind: str
    p: float
    active: bool
    control: Control
    attr: str | None = None
    gate_paths: tuple[str, ...] = ()
    depth: int | None = None
    depth_fraction: float = 0.0
    layer: int | None = None
    module: nn.Module | None = field(default=None, compare=False, repr=False)
    gates: tuple[nn.Module, ...] = field(default=(), compare=False, repr=False)

    @property
    def name(self) -> str:
        """Unique name of the site in its model.

        ``path.attr`` for attribute sites, ``path[kind]`` for functional sites,
        else ``path``.
        """
        if self.control == "attribute" and self.attr:
            return f"{self.path}.{self.attr}" if self.path else self.attr
        if self.control == "functional":
            return f"{self.path}[{self.kind}]"
        return self.path

    def raw(self) -> RawSite:
        """This site without its depth fields, as a finder reported it."""
        return RawSite(
            self.path, self.kind, self.p, self.active, self.control, self.attr, self.gates
        )


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
    control: Literal["module", "attribute", "config"]
    old: float | None
    new: float

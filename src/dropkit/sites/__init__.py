"""Find, select, set and switch the dropout sites of any model.

One package for the site machinery, one concept per module:

* :mod:`~dropkit.sites.record`: the typed records (:class:`DropoutSite`, the
  finders' raw record, :class:`DropoutChange`);
* :mod:`~dropkit.sites.discover`: sites found by inspection (torch, dropkit,
  timm and Hugging Face conventions, no framework import);
* :mod:`~dropkit.sites.probe`: sites seen by one probe forward;
* :mod:`~dropkit.sites.hf_config`: which Hugging Face config field builds which
  site (measured on the ``meta`` device, no ``transformers`` import);
* :mod:`~dropkit.sites.find`: :func:`find_dropout`;
* :mod:`~dropkit.sites.heads` and :mod:`~dropkit.sites.blocks`: the classifier
  head and the repeated blocks of a model;
* :mod:`~dropkit.sites.select`: the one ``sites=`` selector (:data:`SiteSelector`);
* :mod:`~dropkit.sites.setter`: :func:`set_dropout`, all or nothing;
* :mod:`~dropkit.sites.claims` and :mod:`~dropkit.sites.modes`: :func:`mc_mode`
  and :func:`guard`, with reference-counted flags shared across threads.

References:
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 2014.
    Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model
    Uncertainty in Deep Learning", ICML 2016.
"""

from __future__ import annotations

from dropkit.sites.discover import KINDS
from dropkit.sites.find import ProbeInputs, find_dropout
from dropkit.sites.modes import DropoutActiveWarning, GuardHandle, MCMode, guard, mc_mode
from dropkit.sites.record import DropoutChange, DropoutSite
from dropkit.sites.select import SiteSelector
from dropkit.sites.setter import set_dropout

__all__ = [
    "KINDS",
    "DropoutActiveWarning",
    "DropoutChange",
    "DropoutSite",
    "GuardHandle",
    "MCMode",
    "ProbeInputs",
    "SiteSelector",
    "find_dropout",
    "guard",
    "mc_mode",
    "set_dropout",
]

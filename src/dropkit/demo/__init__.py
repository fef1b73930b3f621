"""``dropkit demo``: everything dropkit does, offline, on scikit-learn's digits.

:func:`run_demo` trains, compares and writes ``report.html``, ``metrics.json``
and ``config.json``; see :mod:`dropkit.demo.pipeline` for the steps,
:mod:`dropkit.demo.digits` for the data, network, trainer and evaluator (the
one digits pipeline, shared with ``dropkit bench digits`` and the sweep's
``digits`` task), :mod:`dropkit.demo.training` for the demo's configuration
and learning curves and :mod:`dropkit.demo.methods` for the uncertainty
comparison.

Example:
    >>> from dropkit.demo import run_demo
    >>> run_demo("out/demo", quick=True)  # doctest: +SKIP
"""

from dropkit.demo.pipeline import DemoInterrupted, run_demo
from dropkit.demo.training import DemoConfig

__all__ = ["DemoConfig", "DemoInterrupted", "run_demo"]

"""``dropkit demo``: everything dropkit does, offline, on scikit-learn's digits.

:func:`run_demo` trains, compares and writes ``report.html``, ``metrics.json``
and ``config.json``; see :mod:`dropkit.demo.pipeline` for the steps,
:mod:`dropkit.demo.training` for the data and network and
:mod:`dropkit.demo.methods` for the uncertainty comparison.

Example:
    >>> from dropkit.demo import run_demo
    >>> run_demo("out/demo", quick=True)  # doctest: +SKIP
"""

from dropkit.demo.pipeline import DemoInterrupted, run_demo
from dropkit.demo.training import DemoConfig

__all__ = ["DemoConfig", "DemoInterrupted", "run_demo"]

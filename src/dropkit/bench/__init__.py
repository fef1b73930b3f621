"""Reproducible benchmarks behind ``dropkit bench NAME``.

Each bench (kernels, mc, digits, schedules, sweep, uci, bayes, score) has ``main(argv) -> int``,
a ``--quick`` mode used by the tests, prints a table and writes JSON with ``--out``
through :func:`dropkit.bench._record.write_record`: atomically, with the machine it
ran on (CPU model from ``/proc/cpuinfo``, cores, torch version, thread count) under
``"machine"``; ``dropkit bench NAME`` prints the same machine line first.
Times are medians of several repeats and every target is a ratio against the
alternative measured in the same run.

``uci`` is a package: the command in ``bench/uci/__init__.py`` and the UCI
MC-dropout protocol engine beside it (``data``, ``protocol``, ``batched`` with
its numba kernels ``_fused``, ``streams``, ``reference``, ``mc``), moved here
from ``dropkit.sweep``, which keeps the Optuna study only.
"""

"""Reproducible benchmarks behind ``dropkit bench NAME``.

Each module (kernels, mc, digits, schedules, sweep, uci) has ``main(argv) -> int``,
a ``--quick`` mode used by the tests, prints a table and writes JSON with ``--out``
through :func:`dropkit.bench._record.write_record`: atomically, with the machine it
ran on (CPU model from ``/proc/cpuinfo``, cores, torch version, thread count) under
``"machine"``; ``dropkit bench NAME`` prints the same machine line first.
Times are medians of several repeats and every target is a ratio against the
alternative measured in the same run.
"""

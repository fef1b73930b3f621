"""Reproducible benchmarks behind ``dropkit bench NAME``.

Each module (kernels, mc, digits, schedules, sweep, uci) has ``main(argv) -> int``,
a ``--quick`` mode used by the tests, prints a table and writes JSON with ``--out``.
Times are medians of several repeats and every target is a ratio against the
alternative measured in the same run.
"""

"""``python -m dropkit.cli``: the ``dropkit`` command."""

from dropkit.cli import entry

entry()

"""The ``dropkit`` command line: parse -> library call -> report.

Sub-commands delegate to ``main(argv) -> int`` functions in their modules:
``dropkit bench NAME ...`` runs :func:`dropkit.bench.NAME.main`.
"""

from __future__ import annotations

import importlib
import sys

BENCHES = ("kernels", "mc", "digits", "schedules", "sweep", "uci")

USAGE = """usage: dropkit COMMAND [ARGS]

commands:
  bench {kernels,mc,digits,schedules,sweep,uci}   reproducible benchmarks
  -h, --help                                       show this message
"""


def _error(message: str) -> int:
    print(f"dropkit: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dropkit`` command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    try:
        if command == "bench":
            if not rest or rest[0] not in BENCHES:
                got = rest[0] if rest else None
                return _error(f"bench: expected one of {', '.join(BENCHES)}, but got {got!r}.")
            module = importlib.import_module(f"dropkit.bench.{rest[0]}")
            return int(module.main(rest[1:]) or 0)
        return _error(f"expected a command (bench), but got {command!r}. See dropkit --help.")
    except (ValueError, TypeError, RuntimeError, FileNotFoundError, PermissionError) as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        return _error("interrupted.")


if __name__ == "__main__":
    raise SystemExit(main())

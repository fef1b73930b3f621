"""``dropkit bench NAME``: runs :func:`dropkit.bench.NAME.main` after a line naming the machine."""

from __future__ import annotations

import importlib

from dropkit.cli._common import CLIError, delegate

BENCHES = ("kernels", "mc", "digits", "schedules", "sweep", "uci", "bayes", "score")

BENCH_USAGE = f"""usage: dropkit bench NAME [ARGS]

Reproducible benchmarks; each prints the machine it runs on (CPU model, cores,
torch version, threads) and a table, and writes JSON with --out (the machine
recorded in it too).

names: {", ".join(BENCHES)}

examples:
  dropkit bench kernels --quick
  dropkit bench mc --quick --out out/bench-mc.json
  dropkit bench NAME --help
"""


def main(rest: list[str]) -> int:
    """``dropkit bench [NAME ...]``: list the benches, or run one after the machine line."""
    if not rest or rest[0] in ("-h", "--help"):
        print(BENCH_USAGE)
        return 0
    if rest[0] not in BENCHES:
        raise CLIError(
            f"bench: expected one of {', '.join(BENCHES)}, but got {rest[0]!r}. "
            "See 'dropkit bench --help'."
        )
    if not {"-h", "--help"} & set(rest):
        from dropkit.bench._record import machine, machine_line

        info = machine()
        # the bench sets its threads before timing anything: report those, not today's
        pinned = getattr(importlib.import_module(f"dropkit.bench.{rest[0]}"), "THREADS", None)
        if pinned is not None:
            info["threads"] = pinned
        elif "--threads" in rest[:-1]:
            threads = rest[rest.index("--threads") + 1]
            info["threads"] = int(threads) if threads.isdigit() else info["threads"]
        print(machine_line(info), flush=True)
    return delegate(f"dropkit.bench.{rest[0]}", rest[1:])

"""The ``dropkit`` command line: parse -> library call -> report.

One module per command under ``dropkit.cli`` (``demo``, ``audit``,
``predict``, ``report``, ``sweep``, ``score``, ``bench``), each with
``main(argv) -> int``; what they share (parser, one-line errors, ``--p``
rates) is in ``dropkit.cli._common``, the MODEL loader in
``dropkit.cli._models``. This module dispatches and turns every error and
Ctrl-C into one line.

Commands
--------

``dropkit demo [--out DIR] [--quick] [--seed N]``
    The main job, offline on scikit-learn's digits: trains a small MLP with no
    dropout, fixed dropout, a schedule and ConcreteDropout; compares MC dropout
    with deterministic softmax, temperature scaling, a deep ensemble and
    last-layer Laplace (accuracy, NLL, ECE, OOD AUROC on held-out digits 5-9,
    AURC, cost); sweeps p; measures how MC estimates converge with T. Writes
    ``report.html``, ``metrics.json`` and ``config.json`` into DIR (default
    ``out/demo``), all three together at the end. See :mod:`dropkit.demo`.

``dropkit audit MODEL [--json] [--plain] [--sites ENTRY ...] [--p KIND=P ...]``
    The dropout sites of a model (path, kind, p, control, active), totals per
    kind and warnings; with ``--sites`` only the selected sites. MODEL is a
    local Hugging Face folder, a timm model name (random weights) or
    ``package.module:factory`` (:mod:`dropkit.cli._models`,
    :mod:`dropkit.cli.audit`).

``dropkit predict MODEL --input FILE|TEXT --samples T [--sites ENTRY ...] [--p KIND=P ...]``
    MC-dropout predictions with uncertainty, one JSON object per input on
    stdout (:mod:`dropkit.cli.predict` documents inputs and fields).

``dropkit score MODEL --input POOL --out SCORES.parquet [--engine local|ray] ...``
    MC-dropout scores of a pool of any size, block by block into a resumable
    Parquet folder, in this process or on Ray (:mod:`dropkit.cli.score`).

``dropkit report METRICS_JSON [--out HTML]``
    Re-render a report from a ``metrics.json`` (:func:`dropkit.report.render`).

``dropkit sweep ...``
    Optuna sweeps of dropout rates; runs :func:`dropkit.cli.sweep.main`. It
    takes no ``--sites``: its tasks build their own models (see there).

``--sites ENTRY`` (audit, predict, score) is the library's one selector
``sites=`` (:mod:`dropkit.sites.select`) from the shell: a kind, ``head``,
``last:K``, ``blocks:I-J`` or a glob over site paths; repeat the flag or
separate entries with commas for their union. With ``--p`` only the selected
sites' rates change. :func:`dropkit.cli._common.parse_sites` reads it.

``dropkit bench NAME ...``
    Reproducible benchmarks; runs :func:`dropkit.bench.NAME.main` for NAME in
    kernels, mc, digits, schedules, sweep, uci, bayes, score, after a line naming the
    machine (CPU model, cores, torch version, threads). Without NAME it lists
    the names.

Errors never print a traceback: the command prints one line
``dropkit: error: <what went wrong and how to fix it>`` on stderr and exits
with code 2, also on Ctrl-C (even one that lands just as the command ends).
Set ``DROPKIT_DEBUG=1`` to see the traceback of an unexpected error. When the
reader of stdout goes away (``dropkit audit MODEL | head -1``) the command
stops quietly with code 141, as a Unix tool stopped by SIGPIPE does.
"""

from __future__ import annotations

import importlib
import io
import os
import signal
import sys
from typing import Any

from dropkit.cli._common import (
    P_HELP,
    SITES_HELP,
    CLIError,
    CLIInterrupted,
    apply_rates,
    delegate,
    error_line,
    parse_rates,
    parse_sites,
    plain_text,
    writable_folder,
)
from dropkit.cli.bench import BENCH_USAGE, BENCHES

__all__ = [
    "BENCHES",
    "BENCH_USAGE",
    "COMMANDS",
    "P_HELP",
    "SITES_HELP",
    "USAGE",
    "CLIError",
    "CLIInterrupted",
    "apply_rates",
    "entry",
    "main",
    "parse_rates",
    "parse_sites",
    "plain_text",
    "writable_folder",
]

COMMANDS = ("demo", "audit", "predict", "report", "sweep", "bench", "score")

USAGE = """usage: dropkit COMMAND [ARGS]

Dropout done right for PyTorch.

commands:
  demo                 train, compare and report on digits (offline; --quick: smaller run)
  audit MODEL          list a model's dropout sites, totals and warnings
  predict MODEL        MC-dropout predictions with uncertainty as JSON lines
  score MODEL          MC-dropout scores of a large pool to Parquet (local or Ray)
  report METRICS_JSON  re-render report.html from a metrics.json
  sweep ...            Optuna sweep of dropout rates (SQLite or PostgreSQL storage)
  bench NAME ...       benchmarks: kernels, mc, digits, schedules, sweep, uci, bayes, score

options:
  -h, --help           show this message (COMMAND --help for each command)
  --version            show the dropkit version

examples:
  dropkit demo --out out/demo
  dropkit demo --quick --out /tmp/demo
  dropkit audit vit_small_patch16_224
  dropkit audit path/to/hf-model-folder --json
  dropkit audit vit_tiny_patch16_224 --p element=0.1 --p attention=0.1
  dropkit audit vit_tiny_patch16_224 --sites last:2,head
  dropkit predict path/to/hf-model-folder --input "great movie" --samples 20 --sites head
  dropkit sweep --task digits --trials 20 --storage sqlite:///out/sweep.db --study digits
  dropkit bench mc --quick
"""

# -- dispatch -----------------------------------------------------------------------------


# command -> its module under dropkit.cli; each has main(argv) -> int
_MODULES = {
    "demo": "dropkit.cli.demo",
    "audit": "dropkit.cli.audit",
    "predict": "dropkit.cli.predict",
    "report": "dropkit.cli.report",
    "bench": "dropkit.cli.bench",
}
# commands whose --help is their module docstring (shown without Sphinx markup)
_DELEGATED = {"sweep": "dropkit.cli.sweep", "score": "dropkit.cli.score"}


def _dispatch(args: list[str]) -> int:
    command, rest = args[0], args[1:]
    if command == "--version":
        from dropkit import __version__

        print(f"dropkit {__version__}")
        return 0
    if command in _MODULES:
        return int(importlib.import_module(_MODULES[command]).main(rest))
    if command in _DELEGATED:
        return delegate(_DELEGATED[command], rest)
    raise CLIError(
        f"expected a command ({', '.join(COMMANDS)}), but got {command!r}. See 'dropkit --help'."
    )


class _Interrupts:
    """SIGINT -> KeyboardInterrupt, remembering that it happened.

    A KeyboardInterrupt raised inside an import can land in Python code that
    a native extension is calling (torch registers its operators that way),
    where it aborts the process ("terminate called after throwing an instance
    of pybind11::error_already_set"). So a Ctrl-C that arrives during an
    import is re-delivered a moment later, until it lands outside any import.
    A KeyboardInterrupt raised inside a Python callback that C code calls
    (numba's llvmlite notifies its object cache that way while it compiles)
    cannot propagate: Python prints it as "Exception ignored in ..." with a
    traceback and drops it. While the handler is installed such an unraisable
    KeyboardInterrupt is not printed but re-delivered a moment later, like one
    that lands in an import. The flag lets :func:`main` report an interruption
    that still surfaced as another error. The previous handler and
    ``sys.unraisablehook`` are restored on exit.
    """

    RETRY_S = 0.05

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None
        self._previous_hook: Any = None

    @staticmethod
    def _importing(frame: Any) -> bool:
        while frame is not None:
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                return True
            frame = frame.f_back
        return False

    def _redeliver(self) -> None:
        import threading

        timer = threading.Timer(self.RETRY_S, os.kill, (os.getpid(), signal.SIGINT))
        timer.daemon = True
        timer.start()

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen = True
        if self._importing(frame):
            self._redeliver()
            return
        raise KeyboardInterrupt

    def _unraisable(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            self._redeliver()  # dropped by a C caller: deliver it again, unprinted
            return
        self._previous_hook(unraisable)

    def __enter__(self) -> _Interrupts:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: keep Python's default
            self._previous = None
            return self
        self._previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            sys.unraisablehook = self._previous_hook


INTERRUPTED = "interrupted (Ctrl-C) before the command finished. Re-run it to finish."
LATE_INTERRUPT = "interrupted (Ctrl-C) as the command was ending; its work was complete."
BROKEN_PIPE = 141  # what a shell reports for a tool stopped by SIGPIPE (128 + 13)
_LAST = {"interrupted": False, "late": False}


def _interrupted(message: str = INTERRUPTED) -> int:
    _LAST["interrupted"] = True
    return error_line(message)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so nothing more is written to a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dropkit`` command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    debug = os.environ.get("DROPKIT_DEBUG") == "1"
    _LAST["interrupted"] = False
    with _Interrupts() as interrupts:
        try:
            return _dispatch(args)
        except CLIInterrupted as exc:
            return _interrupted(str(exc))
        except KeyboardInterrupt:
            return _interrupted()
        except BrokenPipeError:
            _quiet_stdout()
            return BROKEN_PIPE
        except SystemExit as exc:  # argparse --help (0) or a delegated command's own exit
            if exc.code is None or isinstance(exc.code, int):
                return int(exc.code or 0)
            return error_line(str(exc.code))
        except CLIError as exc:
            return error_line(str(exc))
        except Exception as exc:
            if interrupts.seen:
                return _interrupted()
            if debug:
                raise
            known = (ValueError, TypeError, RuntimeError, OSError, ImportError)
            text = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
            hint = "" if isinstance(exc, known) else " (DROPKIT_DEBUG=1 for details)"
            return error_line(text + hint)


def _late(signum: int, frame: Any) -> None:
    _LAST["late"] = True


def entry() -> None:
    """Process entry point (console script and ``python -m dropkit.cli``).

    Exits with :func:`main`'s code. Outside the command's own work a Ctrl-C
    only sets a flag, and once :func:`main` has returned SIGINT is ignored:
    a Ctrl-C that lands as the command ends still exits with code 2 and one
    line on stderr, never with "killed by SIGINT" and nothing said.
    """
    _LAST["late"] = False
    try:
        signal.signal(signal.SIGINT, _late)
    except ValueError:  # pragma: no cover - entry() always runs in the main thread
        pass
    code = main()
    # From here on a Ctrl-C is ignored; one that came since main() returned was
    # recorded by _late (or is pending, if the caller held signals off).
    try:  # (look first: ignoring a signal discards its pending instance)
        pending = signal.SIGINT in signal.sigpending()
    except (AttributeError, OSError):  # pragma: no cover - not POSIX
        pending = False
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if (pending or _LAST["late"]) and not _LAST["interrupted"]:
        code = _interrupted(LATE_INTERRUPT)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        code = BROKEN_PIPE if code == 0 else code
    sys.stderr.flush()
    raise SystemExit(code)

"""The ``dropkit`` command line: parse -> library call -> report.

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

``dropkit audit MODEL [--json] [--plain] [--p KIND=P ...]``
    The dropout sites of a model (path, kind, p, control, active), totals per
    kind and warnings. MODEL is a local Hugging Face folder, a timm model name
    (random weights) or ``package.module:factory``
    (:mod:`dropkit.report.loading`, :mod:`dropkit.report.audit`).

``dropkit predict MODEL --input FILE|TEXT --samples T [--sites head] [--p KIND=P ...]``
    MC-dropout predictions with uncertainty, one JSON object per input on
    stdout (:mod:`dropkit.report.predict` documents inputs and fields).

``dropkit score MODEL --input POOL --out SCORES.parquet [--engine local|ray] ...``
    MC-dropout scores of a pool of any size, block by block into a resumable
    Parquet folder, in this process or on Ray (:mod:`dropkit.score.cli`).

``dropkit report METRICS_JSON [--out HTML]``
    Re-render a report from a ``metrics.json`` (:func:`dropkit.report.render`).

``dropkit sweep ...``
    Optuna sweeps of dropout rates; runs :func:`dropkit.sweep.cli.main`.

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

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCHES = ("kernels", "mc", "digits", "schedules", "sweep", "uci", "bayes", "score")
COMMANDS = ("demo", "audit", "predict", "report", "sweep", "bench", "score")

USAGE = """usage: dropkit COMMAND [ARGS]

Dropout done right for PyTorch.

commands:
  demo                 train, compare and report on digits (offline; ~20 s, --quick ~10 s)
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
  dropkit predict path/to/hf-model-folder --input "great movie" --samples 20 --sites head
  dropkit sweep --task digits --trials 20 --storage sqlite:///out/sweep.db --study digits
  dropkit bench mc --quick
"""

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


class CLIError(Exception):
    """A user error, shown as one line with exit code 2."""


class CLIInterrupted(KeyboardInterrupt):
    """A Ctrl-C with a command-specific, true account of what was left on disk."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # noqa: D102 - argparse hook
        raise CLIError(f"{self.prog}: {message}. See '{self.prog} --help'.")


def _parser(name: str, description: str, examples: str) -> _Parser:
    return _Parser(
        prog=f"dropkit {name}",
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _error(message: str) -> int:
    line = " ".join(str(message).split())
    print(f"dropkit: error: {line}", file=sys.stderr)
    return 2


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """Strip Sphinx markup from a docstring shown as help in a terminal.

    ``:func:`dropkit.mc_predict``` becomes ``dropkit.mc_predict``, a literal in
    double backticks loses them, and ``.. code-block::`` lines go.

    Args:
        text: Docstring text.

    Returns:
        The text as a person reads it in a terminal.

    Example:
        >>> plain_text("``dropkit bench mc``: see :func:`~dropkit.mc_predict`.")
        'dropkit bench mc: see dropkit.mc_predict.'
    """
    text = _ROLE.sub(lambda m: m.group(1), text)
    text = _LITERAL.sub(lambda m: m.group(1), text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(".. "))


def writable_folder(caller: str, folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and prove it is writable, or raise CLIError."""
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dropkit-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CLIError(
            f"{caller}: expected a writable output folder, but got {str(folder)!r} "
            f"({exc.strerror or exc}). Pass another --out or fix the folder's permissions."
        ) from exc
    return path


def _progress() -> bool:
    return sys.stderr.isatty()


# -- rates from the shell -----------------------------------------------------------------

P_HELP = (
    "set drop rates before running: KIND=P for every site of that kind (repeatable, "
    "e.g. --p element=0.1 --p attention=0.1), or P alone for every site"
)


def parse_rates(caller: str, pairs: list[str]) -> float | dict[str, float] | None:
    """Parse repeated ``--p KIND=P`` / ``--p P`` flags into a ``set_dropout`` rate.

    Args:
        caller: Command name for error messages.
        pairs: The flag values, in order.

    Returns:
        None without flags, a float for a bare ``--p P``, else ``{kind: p}``.

    Raises:
        CLIError: For an unknown kind, a rate outside ``[0, 1)`` or a bare
            rate mixed with per-kind rates.

    Example:
        >>> parse_rates("dropkit predict", ["element=0.1", "attention=0.05"])
        {'element': 0.1, 'attention': 0.05}
    """
    from dropkit.sites import KINDS

    if not pairs:
        return None
    rates: dict[str, float] = {}
    bare: float | None = None
    for pair in pairs:
        kind, sep, value = pair.rpartition("=")
        kind = kind.strip()
        if sep and kind not in KINDS:
            raise CLIError(
                f"{caller}: expected --p KIND=P with KIND one of {', '.join(KINDS)}, but got "
                f"{pair!r}. List the model's kinds with dropkit audit MODEL."
            )
        try:
            p = float(value)
        except ValueError:
            p = float("nan")
        if not 0.0 <= p < 1.0:
            raise CLIError(
                f"{caller}: expected --p {kind + '=' if sep else ''}P with P in [0, 1), but got "
                f"{pair!r}. Write e.g. --p element=0.1."
            )
        if sep:
            rates[kind] = p
        else:
            bare = p
    if bare is not None and rates:
        raise CLIError(
            f"{caller}: expected either --p P (every site) or --p KIND=P flags, but got both "
            f"({', '.join(pairs)}). Use one form."
        )
    return bare if bare is not None else rates


def apply_rates(caller: str, model: Any, rates: float | dict[str, float] | None) -> None:
    """Set ``rates`` on ``model`` with :func:`dropkit.set_dropout`; notes go to stderr."""
    import warnings

    from dropkit.sites import set_dropout

    if rates is None:
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            changes = set_dropout(model, rates)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"{caller}: --p: {exc}") from None
    for w in caught:
        print(f"dropkit: note: {' '.join(str(w.message).split())}", file=sys.stderr)
    live = [c for c in changes if c.control != "config"]
    kinds = sorted({c.kind for c in live})
    print(
        f"dropkit: note: --p changed {len(live)} site rates"
        + (f" ({', '.join(kinds)})" if kinds else ""),
        file=sys.stderr,
    )


def _with_rate_hint(exc: Exception) -> Exception:
    text = str(exc)
    if "set_dropout" in text and "--p" not in text:
        return CLIError(
            f"{text} From the shell: pass --p KIND=P, e.g. --p element=0.1 "
            "(dropkit audit MODEL lists the kinds)."
        )
    return exc


# -- demo ---------------------------------------------------------------------------------


def _demo(argv: list[str]) -> int:
    p = _parser(
        "demo",
        "Train a small MLP on scikit-learn's digits (classes 0-4; 5-9 held out as\n"
        "out-of-distribution) with no dropout, fixed dropout, a schedule and\n"
        "ConcreteDropout; compare MC dropout with deterministic softmax, temperature\n"
        "scaling, a deep ensemble and Laplace; sweep p; write report.html,\n"
        "metrics.json and config.json (all three together at the end, so an\n"
        "interrupted run leaves the folder as it was). Fully offline.",
        "  dropkit demo                       # full run into out/demo (~20 s on 2 idle cores)\n"
        "  dropkit demo --quick --out /tmp/d  # smaller run (~10 s)\n"
        "  dropkit demo --seed 1 --out out/seed1\n",
    )
    p.add_argument("--out", default="out/demo", help="output folder (created if missing)")
    p.add_argument("--quick", action="store_true", help="fewer epochs, members and samples")
    p.add_argument("--seed", type=int, default=0, help="seed of data split, init and masks")
    args = p.parse_args(argv)
    out = writable_folder("dropkit demo", args.out)
    from dropkit.demo import DemoInterrupted, run_demo

    try:
        paths = run_demo(out, quick=args.quick, seed=args.seed, progress=_progress())
    except DemoInterrupted as exc:
        if exc.committed:
            raise CLIInterrupted(
                f"interrupted after this run's report.html, metrics.json and config.json were "
                f"all written to {str(out)!r}; nothing is missing."
            ) from None
        raise CLIInterrupted(
            f"interrupted before any output was written; {str(out)!r} is as it was before "
            "this run (the demo writes its three files together at the end). Re-run to finish."
        ) from None
    for label, path in paths.items():
        print(f"{label:>8}: {path}")
    return 0


# -- audit --------------------------------------------------------------------------------


def _audit(argv: list[str]) -> int:
    p = _parser(
        "audit",
        "List every dropout site of a model (path, kind, p, control, active), the\n"
        "totals per kind and warnings: all rates 0, sites that module-only MC dropout\n"
        "cannot reach, dropout feeding BatchNorm, training mode, very high rates.\n\n"
        "MODEL is a local Hugging Face folder (with config.json), a timm model name\n"
        "(built with random weights, nothing downloaded) or package.module:factory.",
        "  dropkit audit path/to/bert-folder\n"
        "  dropkit audit vit_tiny_patch16_224 --json\n"
        "  dropkit audit vit_tiny_patch16_224 --p element=0.1   # the sites after setting rates\n"
        "  dropkit audit mypkg.models:build_model --plain\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--plain", action="store_true", help="plain text even if rich is installed")
    p.add_argument("--p", action="append", default=[], metavar="KIND=P", help=P_HELP)
    args = p.parse_args(argv)
    rates = parse_rates("dropkit audit", args.p)
    from dropkit.report.audit import audit_model, print_audit
    from dropkit.report.loading import load_model

    loaded = load_model(args.model, caller="dropkit audit")
    apply_rates("dropkit audit", loaded.model, rates)
    audit = audit_model(loaded.model, args.model)
    if args.json:
        print(audit.to_json())
    else:
        print_audit(audit, use_rich=False if args.plain else None)
    return 0


# -- predict ------------------------------------------------------------------------------


def _predict(argv: list[str]) -> int:
    p = _parser(
        "predict",
        "MC-dropout predictions with uncertainty, one JSON object per input on stdout:\n"
        "index, prediction, label, probs (mean of sample probabilities),\n"
        "predictive_entropy, expected_entropy, mutual_information, variation_ratio,\n"
        "samples_used.\n\n"
        "--input is a .txt file (one text per line, tokenised by the model folder's\n"
        "tokenizer; index is the 0-based line number, blank lines get no record), a\n"
        ".npy / .pt tensor (N, ...), a .csv of numbers (one input per row; a first row\n"
        "that is not numbers is a header), or a single text.\n\n"
        "A model built with every rate 0 (a timm model made with drop_rate=0) has\n"
        "nothing to sample: give it rates with --p KIND=P.",
        '  dropkit predict path/to/hf-folder --input "a great movie" --samples 20 --sites head\n'
        "  dropkit predict path/to/hf-folder --input reviews.txt --samples 30 > preds.jsonl\n"
        "  dropkit predict mypkg.models:build_mlp --input x.npy --samples 50 --seed 0\n"
        "  dropkit predict resnet10t --input x.npy --p element=0.2 --samples 10\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--input", required=True, metavar="FILE|TEXT", help="inputs (see above)")
    p.add_argument("--samples", type=int, default=20, metavar="T", help="MC samples (20)")
    p.add_argument("--sites", default=None, help="restrict MC to these sites, e.g. head")
    p.add_argument(
        "--output",
        default="logits",
        choices=("logits", "probs", "regression"),
        help="what the model returns (logits)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="inputs per forward (32)")
    p.add_argument("--seed", type=int, default=None, help="seed of the dropout masks")
    p.add_argument("--p", action="append", default=[], metavar="KIND=P", help=P_HELP)
    args = p.parse_args(argv)
    if args.samples < 1:
        raise CLIError(
            f"dropkit predict: expected --samples >= 1, but got {args.samples}. Use e.g. 20."
        )
    if args.batch_size < 1:
        raise CLIError(
            f"dropkit predict: expected --batch-size >= 1, but got {args.batch_size}. Use 32."
        )
    rates = parse_rates("dropkit predict", args.p)
    from dropkit.report.loading import load_model
    from dropkit.report.predict import predict_lines, read_inputs

    inputs = read_inputs(args.input)
    for note in inputs.notes:
        print(f"dropkit: note: {note}", file=sys.stderr)
    loaded = load_model(args.model, caller="dropkit predict", classifier=True)
    for note in loaded.notes:
        print(f"dropkit: note: {note}", file=sys.stderr)
    apply_rates("dropkit predict", loaded.model, rates)
    _check_stochastic(loaded.model, args.model, args.sites)
    try:
        for record in predict_lines(
            loaded,
            inputs,
            samples=args.samples,
            sites=args.sites,
            output=args.output,
            batch_size=args.batch_size,
            progress=_progress(),
            seed=args.seed,
        ):
            sys.stdout.write(json.dumps(record) + "\n")
    except (RuntimeError, ValueError) as exc:
        raise _with_rate_hint(exc) from exc
    sys.stdout.flush()
    return 0


def _check_stochastic(model: Any, name: str, sites: str | None) -> None:
    """Refuse, with the --p fix, a model whose every dropout rate is 0."""
    from collections import Counter

    from dropkit.sites import find_dropout

    if sites is not None:
        return  # mc_predict judges the selected sites itself
    found = find_dropout(model)
    # No static site at all: the model may still call dropout functionally, which
    # mc_predict finds by probing; it judges that case itself.
    if found and all(s.p == 0 for s in found):
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(Counter(s.kind for s in found).items()))
        first = sorted({s.kind for s in found})[0]
        raise CLIError(
            f"dropkit predict: expected at least one dropout rate above 0, but got {name!r} "
            f"with all {len(found)} sites at p = 0 ({kinds}). MC dropout would repeat one "
            f"prediction: pass rates with --p KIND=P, e.g. --p {first}=0.1."
        )


# -- report -------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _report(argv: list[str]) -> int:
    p = _parser(
        "report",
        "Render report.html from a metrics.json (schema in dropkit.report).",
        "  dropkit report out/demo/metrics.json\n"
        "  dropkit report out/demo/metrics.json --out /tmp/report.html\n",
    )
    p.add_argument("metrics", metavar="METRICS_JSON")
    p.add_argument("--out", default=None, help="HTML file (default: report.html beside the input)")
    args = p.parse_args(argv)
    from dropkit.report import render

    src = Path(args.metrics).expanduser()
    out = Path(args.out).expanduser() if args.out else src.with_name("report.html")
    if out.is_dir():
        raise CLIError(
            f"dropkit report: expected --out to be an HTML file, but got the folder "
            f"{str(out)!r}. Pass a file name, e.g. --out {str(out / 'report.html')!r}."
        )
    if _same_file(out, src):
        flag = "--out" if args.out else "the default output (report.html beside the input)"
        raise CLIError(
            f"dropkit report: expected an output other than the input, but got {flag} "
            f"{str(out)!r}, which is the metrics file itself. Pass another --out, e.g. "
            f"--out {str(src.with_name('report-page.html'))!r}."
        )
    writable_folder("dropkit report", out.parent)
    print(render(src, out))
    return 0


# -- bench --------------------------------------------------------------------------------


def _bench(rest: list[str]) -> int:
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
        if "--threads" in rest[:-1]:  # the bench sets it before timing anything
            threads = rest[rest.index("--threads") + 1]
            info["threads"] = int(threads) if threads.isdigit() else info["threads"]
        print(machine_line(info), flush=True)
    return _delegate(f"dropkit.bench.{rest[0]}", rest[1:])


# -- dispatch -----------------------------------------------------------------------------


def _delegate(module_name: str, argv: list[str]) -> int:
    module = importlib.import_module(module_name)
    if not {"-h", "--help"} & set(argv):
        return int(module.main(argv) or 0)
    # Help of a delegated command: argparse prints the module docstring; show it
    # without Sphinx markup.
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            code = int(module.main(argv) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    sys.stdout.write(plain_text(buffer.getvalue()))
    return code


def _dispatch(args: list[str]) -> int:
    command, rest = args[0], args[1:]
    if command == "--version":
        from dropkit import __version__

        print(f"dropkit {__version__}")
        return 0
    if command == "demo":
        return _demo(rest)
    if command == "audit":
        return _audit(rest)
    if command == "predict":
        return _predict(rest)
    if command == "report":
        return _report(rest)
    if command == "sweep":
        return _delegate("dropkit.sweep.cli", rest)
    if command == "bench":
        return _bench(rest)
    if command == "score":
        return _delegate("dropkit.score.cli", rest)
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
    The flag lets :func:`main` report an interruption that still surfaced as
    another error. The previous handler is restored on exit.
    """

    RETRY_S = 0.05

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    @staticmethod
    def _importing(frame: Any) -> bool:
        while frame is not None:
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                return True
            frame = frame.f_back
        return False

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen = True
        if self._importing(frame):
            import threading

            timer = threading.Timer(self.RETRY_S, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        raise KeyboardInterrupt

    def __enter__(self) -> _Interrupts:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: keep Python's default
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


INTERRUPTED = "interrupted (Ctrl-C) before the command finished. Re-run it to finish."
LATE_INTERRUPT = "interrupted (Ctrl-C) as the command was ending; its work was complete."
BROKEN_PIPE = 141  # what a shell reports for a tool stopped by SIGPIPE (128 + 13)
_LAST = {"interrupted": False, "late": False}


def _interrupted(message: str = INTERRUPTED) -> int:
    _LAST["interrupted"] = True
    return _error(message)


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
            return _error(str(exc.code))
        except CLIError as exc:
            return _error(str(exc))
        except Exception as exc:
            if interrupts.seen:
                return _interrupted()
            if debug:
                raise
            known = (ValueError, TypeError, RuntimeError, OSError, ImportError)
            text = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
            hint = "" if isinstance(exc, known) else " (DROPKIT_DEBUG=1 for details)"
            return _error(text + hint)


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


if __name__ == "__main__":
    entry()

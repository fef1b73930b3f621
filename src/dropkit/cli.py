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
    ``out/demo``). See :mod:`dropkit.demo`.

``dropkit audit MODEL [--json] [--plain]``
    The dropout sites of a model (path, kind, p, control, active), totals per
    kind and warnings. MODEL is a local Hugging Face folder, a timm model name
    (random weights) or ``package.module:factory``
    (:mod:`dropkit.report.loading`, :mod:`dropkit.report.audit`).

``dropkit predict MODEL --input FILE|TEXT --samples T [--sites head]``
    MC-dropout predictions with uncertainty, one JSON object per input on
    stdout (:mod:`dropkit.report.predict` documents inputs and fields).

``dropkit report METRICS_JSON [--out HTML]``
    Re-render a report from a ``metrics.json`` (:func:`dropkit.report.render`).

``dropkit sweep ...``
    Optuna sweeps of dropout rates; runs :func:`dropkit.sweep.cli.main`.

``dropkit bench NAME ...``
    Reproducible benchmarks; runs :func:`dropkit.bench.NAME.main` for NAME in
    kernels, mc, digits, schedules, sweep, uci, bayes.

Errors never print a traceback: the command prints one line
``dropkit: error: <what went wrong and how to fix it>`` on stderr and exits
with code 2 (also on Ctrl-C). Set ``DROPKIT_DEBUG=1`` to see the traceback of
an unexpected error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCHES = ("kernels", "mc", "digits", "schedules", "sweep", "uci", "bayes")
COMMANDS = ("demo", "audit", "predict", "report", "sweep", "bench")

USAGE = """usage: dropkit COMMAND [ARGS]

Dropout done right for PyTorch.

commands:
  demo                 train, compare and report on digits (offline, ~3 min; --quick ~30 s)
  audit MODEL          list a model's dropout sites, totals and warnings
  predict MODEL        MC-dropout predictions with uncertainty as JSON lines
  report METRICS_JSON  re-render report.html from a metrics.json
  sweep ...            Optuna sweep of dropout rates (SQLite or PostgreSQL storage)
  bench NAME ...       benchmarks: kernels, mc, digits, schedules, sweep, uci, bayes

options:
  -h, --help           show this message (COMMAND --help for each command)
  --version            show the dropkit version

examples:
  dropkit demo --out out/demo
  dropkit demo --quick --out /tmp/demo
  dropkit audit vit_small_patch16_224
  dropkit audit path/to/hf-model-folder --json
  dropkit predict path/to/hf-model-folder --input "great movie" --samples 20 --sites head
  dropkit sweep --task digits --trials 20 --storage sqlite:///out/sweep.db --study digits
  dropkit bench mc --quick
"""

BENCH_USAGE = f"""usage: dropkit bench NAME [ARGS]

Reproducible benchmarks; each prints a table and writes JSON with --out.

names: {", ".join(BENCHES)}

examples:
  dropkit bench kernels --quick
  dropkit bench mc --quick --out out/bench-mc.json
  dropkit bench NAME --help
"""


class CLIError(Exception):
    """A user error, shown as one line with exit code 2."""


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


def writable_folder(where: str, folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and prove it is writable, or raise CLIError."""
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dropkit-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CLIError(
            f"{where}: expected a writable output folder, but got {str(folder)!r} "
            f"({exc.strerror or exc}). Pass another --out or fix the folder's permissions."
        ) from exc
    return path


def _progress() -> bool:
    return sys.stderr.isatty()


# -- demo ---------------------------------------------------------------------------------


def _demo(argv: list[str]) -> int:
    p = _parser(
        "demo",
        "Train a small MLP on scikit-learn's digits (classes 0-4; 5-9 held out as\n"
        "out-of-distribution) with no dropout, fixed dropout, a schedule and\n"
        "ConcreteDropout; compare MC dropout with deterministic softmax, temperature\n"
        "scaling, a deep ensemble and Laplace; sweep p; write report.html,\n"
        "metrics.json and config.json. Fully offline.",
        "  dropkit demo                       # full run into out/demo (< 3 min on 2 cores)\n"
        "  dropkit demo --quick --out /tmp/d  # smaller run (< 30 s)\n"
        "  dropkit demo --seed 1 --out out/seed1\n",
    )
    p.add_argument("--out", default="out/demo", help="output folder (created if missing)")
    p.add_argument("--quick", action="store_true", help="fewer epochs, members and samples")
    p.add_argument("--seed", type=int, default=0, help="seed of data split, init and masks")
    args = p.parse_args(argv)
    out = writable_folder("dropkit demo", args.out)
    from dropkit.demo import run_demo

    paths = run_demo(out, quick=args.quick, seed=args.seed, progress=_progress())
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
        "  dropkit audit mypkg.models:build_model --plain\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--plain", action="store_true", help="plain text even if rich is installed")
    args = p.parse_args(argv)
    from dropkit.report.audit import audit_model, print_audit
    from dropkit.report.loading import load_model

    loaded = load_model(args.model, where="dropkit audit")
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
        "prediction, label, probs (mean of sample probabilities), predictive_entropy,\n"
        "expected_entropy, mutual_information, variation_ratio, samples_used.\n\n"
        "--input is a .txt file (one text per line, tokenised by the model folder's\n"
        "tokenizer), a .npy / .pt tensor (N, ...), a .csv of numbers (one input per\n"
        "row), or a single text.",
        '  dropkit predict path/to/hf-folder --input "a great movie" --samples 20 --sites head\n'
        "  dropkit predict path/to/hf-folder --input reviews.txt --samples 30 > preds.jsonl\n"
        "  dropkit predict mypkg.models:build_mlp --input x.npy --samples 50 --seed 0\n",
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
    args = p.parse_args(argv)
    if args.samples < 1:
        raise CLIError(
            f"dropkit predict: expected --samples >= 1, but got {args.samples}. Use e.g. 20."
        )
    if args.batch_size < 1:
        raise CLIError(
            f"dropkit predict: expected --batch-size >= 1, but got {args.batch_size}. Use 32."
        )
    from dropkit.report.loading import load_model
    from dropkit.report.predict import predict_lines, read_inputs

    inputs = read_inputs(args.input)
    loaded = load_model(args.model, where="dropkit predict", classifier=True)
    for note in loaded.notes:
        print(f"dropkit: note: {note}", file=sys.stderr)
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
    sys.stdout.flush()
    return 0


# -- report -------------------------------------------------------------------------------


def _report(argv: list[str]) -> int:
    p = _parser(
        "report",
        "Render report.html from a metrics.json (schema in dropkit.report).",
        "  dropkit report out/demo/metrics.json\n"
        "  dropkit report out/demo/metrics.json --out /tmp/report.html\n",
    )
    p.add_argument("metrics", metavar="METRICS_JSON")
    p.add_argument("--out", default=None, help="HTML file (default: next to METRICS_JSON)")
    args = p.parse_args(argv)
    from dropkit.report import render

    out = Path(args.out) if args.out else Path(args.metrics).with_name("report.html")
    writable_folder("dropkit report", out.parent)
    print(render(args.metrics, out))
    return 0


# -- dispatch -----------------------------------------------------------------------------


def _delegate(module_name: str, argv: list[str]) -> int:
    module = importlib.import_module(module_name)
    return int(module.main(argv) or 0)


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
        if rest and rest[0] in ("-h", "--help"):
            print(BENCH_USAGE)
            return 0
        if not rest or rest[0] not in BENCHES:
            got = rest[0] if rest else None
            raise CLIError(
                f"bench: expected one of {', '.join(BENCHES)}, but got {got!r}. "
                "See 'dropkit bench --help'."
            )
        return _delegate(f"dropkit.bench.{rest[0]}", rest[1:])
    raise CLIError(
        f"expected a command ({', '.join(COMMANDS)}), but got {command!r}. See 'dropkit --help'."
    )


class _Interrupts:
    """SIGINT -> KeyboardInterrupt, remembering that it happened.

    A Ctrl-C that lands inside an import can surface later as another error
    (a half-initialised module); the flag lets :func:`main` still report it
    as an interruption. The previous handler is restored on exit.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen = True
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


INTERRUPTED = "interrupted; nothing half-written was left behind. Re-run to finish."
_LAST = {"interrupted": False}  # whether the last main() call ended on Ctrl-C


def _interrupted() -> int:
    _LAST["interrupted"] = True
    return _error(INTERRUPTED)


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
        except KeyboardInterrupt:
            return _interrupted()
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


def entry() -> None:
    """Process entry point (console script and ``python -m dropkit.cli``).

    Exits with :func:`main`'s code. After a Ctrl-C the process ends at once
    with code 2 once the message is flushed: a second ``KeyboardInterrupt``
    surfacing during interpreter shutdown (seen with ``python -m``) would
    otherwise turn the exit status into "killed by SIGINT".
    """
    code = main()
    if _LAST["interrupted"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()

"""What every ``dropkit`` command shares: the parser, one-line errors, rates from the shell.

:class:`CLIError` is a user error (one line, exit code 2); :class:`Parser`
turns argparse's own errors into one; :func:`parse_rates` / :func:`apply_rates`
read repeated ``--p KIND=P`` flags; :func:`delegate` runs a command module's
``main`` (its ``--help`` without Sphinx markup, :func:`plain_text`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from torch import nn


class CLIError(Exception):
    """A user error, shown as one line with exit code 2."""


class CLIInterrupted(KeyboardInterrupt):
    """A Ctrl-C with a command-specific, true account of what was left on disk."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are :class:`CLIError` (one line, exit code 2)."""

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse hook
        raise CLIError(f"{self.prog}: {message}. See '{self.prog} --help'.")


def command_parser(name: str, description: str, examples: str) -> Parser:
    """The parser of ``dropkit NAME``: its description, then ``examples:`` as written."""
    return Parser(
        prog=f"dropkit {name}",
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def error_line(message: str) -> int:
    """Print ``dropkit: error: MESSAGE`` as one line on stderr; return exit code 2."""
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


def progress_enabled() -> bool:
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


def apply_rates(caller: str, model: nn.Module, rates: float | dict[str, float] | None) -> None:
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


def with_rate_hint(exc: Exception) -> Exception:
    """``exc``, or a :class:`CLIError` adding the shell's ``--p`` fix to a ``set_dropout`` hint."""
    text = str(exc)
    if "set_dropout" in text and "--p" not in text:
        return CLIError(
            f"{text} From the shell: pass --p KIND=P, e.g. --p element=0.1 "
            "(dropkit audit MODEL lists the kinds)."
        )
    return exc


# -- delegated commands (sweep, score, bench NAME) ----------------------------------


def delegate(module_name: str, argv: list[str]) -> int:
    """Run ``module_name.main(argv)``; its ``--help`` is printed without Sphinx markup."""
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

"""What every ``dropkit`` command shares: the parser, one-line errors, rates and sites.

:class:`CLIError` is a user error (one line, exit code 2); :class:`Parser`
turns argparse's own errors into one; :func:`parse_rates` / :func:`apply_rates`
read repeated ``--p KIND=P`` flags; :func:`parse_sites` / :func:`selected_sites`
read repeated or comma-separated ``--sites`` flags into the library's one
selector (:mod:`dropkit.sites.select`); :func:`delegate` runs a command
module's ``main`` (its ``--help`` without Sphinx markup, :func:`plain_text`).
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
from typing import TYPE_CHECKING, NoReturn, TypeAlias

if TYPE_CHECKING:
    from torch import nn

    from dropkit.sites import DropoutSite
    from dropkit.sites.blocks import Blocks


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


def apply_rates(
    caller: str,
    model: nn.Module,
    rates: float | dict[str, float] | None,
    sites: ShellSites = None,
) -> None:
    """Set ``rates`` on ``model`` with :func:`dropkit.set_dropout`; notes go to stderr.

    Args:
        caller: Command name for error messages.
        model: The model.
        rates: From :func:`parse_rates`; None changes nothing.
        sites: From :func:`parse_sites`: only these sites change (None: all).
    """
    import warnings

    from dropkit.sites import set_dropout

    if rates is None:
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            changes = set_dropout(model, rates, sites=sites)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"{caller}: --p: {exc}") from None
    for w in caught:
        print(f"dropkit: note: {' '.join(str(w.message).split())}", file=sys.stderr)
    live = [c for c in changes if c.control != "config"]
    kinds = sorted({c.kind for c in live})
    print(
        f"dropkit: note: --p changed {len(live)} site rates"
        + (f" ({', '.join(kinds)})" if kinds else "")
        + (" of the --sites selection" if sites is not None else ""),
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


# -- sites from the shell -----------------------------------------------------------------

#: What :func:`parse_sites` returns: None (every site), one entry, or a list (the union).
ShellSites: TypeAlias = str | list[str] | None

SITES_HELP = (
    "which dropout sites (repeatable or comma-separated; the union): a kind (element, "
    "attention, ...), head, last:K, blocks:I-J, or a glob over site paths, e.g. "
    "--sites head --sites 'encoder.layer.1*'; dropkit audit MODEL lists the paths"
)

_SITES_EXAMPLE = "Write e.g. --sites head or --sites attention,classifier.*"


def parse_sites(caller: str, values: list[str]) -> ShellSites:
    """Parse repeated / comma-separated ``--sites`` flags into a ``sites=`` selector.

    Each entry is what :mod:`dropkit.sites.select` takes as a string: a site
    kind, ``head``, ``last:K`` / ``blocks:I-J``, or a glob over site paths.
    Entries are split at commas (site paths never hold one), stripped, and
    kept once each in the order given; several entries select their union.
    What needs the model (does an entry select a site) is checked by
    :func:`selected_sites`.

    Args:
        caller: Command name for error messages.
        values: The flag values, in order.

    Returns:
        None without flags, the entry itself for one entry (the selector the
        library would be given in Python), else the list of entries.

    Raises:
        CLIError: For an empty entry or a malformed ``last:K`` / ``blocks:I-J``.

    Example:
        >>> parse_sites("dropkit audit", ["head", "attention,encoder.layer.1*"])
        ['head', 'attention', 'encoder.layer.1*']
        >>> parse_sites("dropkit audit", ["head"])
        'head'
    """
    from dropkit.sites.blocks import check_depth_spec, is_depth_spec

    entries: list[str] = []
    for value in values:
        for raw in value.split(","):
            entry = raw.strip()
            if not entry:
                raise CLIError(
                    f"{caller}: expected --sites ENTRY[,ENTRY...] with no empty entry, but "
                    f"got {value!r}. {_SITES_EXAMPLE}."
                )
            if is_depth_spec(entry):
                try:
                    match = check_depth_spec(caller, entry)
                except ValueError:
                    match = None
                if match is None or (match.group(2) and int(match.group(2)) > int(match.group(3))):
                    raise CLIError(
                        f"{caller}: expected --sites last:K or blocks:I-J with integers K >= 0 "
                        f"and 0 <= I <= J, but got {entry!r}. Write e.g. --sites last:2 or "
                        "--sites blocks:0-3."
                    )
            if entry not in entries:
                entries.append(entry)
    if not entries:
        return None
    return entries[0] if len(entries) == 1 else entries


def selected_sites(
    caller: str,
    model: nn.Module,
    sites: ShellSites,
    model_name: str,
    *,
    found: list[DropoutSite] | None = None,
) -> list[DropoutSite]:
    """The sites of ``model`` that ``sites`` picks; every entry must pick one.

    Args:
        caller: Command name for error messages.
        model: The loaded model.
        sites: From :func:`parse_sites`; None picks every site of ``found``.
        model_name: How the user named the model (the MODEL argument).
        found: The candidate sites (default: ``find_dropout(model,
            config=False)``, the sites that ``mc_predict`` switches).

    Returns:
        The selected sites, in module order.

    Raises:
        CLIError: If an entry selects no site, or a ``last:K`` / ``blocks:I-J``
            entry does not fit the model's repeated blocks.
    """
    from dropkit.sites import KINDS, find_dropout
    from dropkit.sites.blocks import find_blocks, is_depth_spec
    from dropkit.sites.select import select_sites

    if found is None:
        found = find_dropout(model, config=False)
    if sites is None:
        return list(found)
    live = [s for s in found if s.control != "config"]
    audit = f"dropkit audit {model_name} (no --sites) lists every path"
    for entry in [sites] if isinstance(sites, str) else sites:
        if is_depth_spec(entry):
            _check_depth(caller, model, entry, model_name, find_blocks(model, live), audit)
        if not select_sites(model, entry, caller, found=found, strict=False, blocks_of=live):
            close = _close_names(entry, [*KINDS, "head", *(s.name for s in found)])
            hint = f" Did you mean {close!r}?" if close else ""
            raise CLIError(
                f"{caller}: expected --sites entry {entry!r} to select at least one of the "
                f"{len(found)} dropout sites of {model_name!r}, but it selects none.{hint} "
                f"Pass a kind ({', '.join(KINDS)}), head, last:K, blocks:I-J or a glob over "
                f"site paths; {audit}."
            )
    return select_sites(model, sites, caller, found=found, strict=False, blocks_of=live)


def _check_depth(
    caller: str, model: nn.Module, entry: str, model_name: str, blocks: Blocks | None, audit: str
) -> None:
    """Raise CLIError unless ``entry`` (``last:K`` / ``blocks:I-J``) fits ``blocks``."""
    if blocks is None:
        raise CLIError(
            f"{caller}: expected a model with repeated blocks (at least 2 children of one "
            f"class holding dropout sites) for --sites {entry}, but got {model_name!r} "
            f"({type(model).__name__}) with none. Select sites by kind or path instead; "
            f"{audit}."
        )
    n, under = len(blocks.modules), blocks.path or "the root"
    kind, _, span = entry.partition(":")
    if kind == "last" and int(span) > n:
        raise CLIError(
            f"{caller}: expected --sites last:K with K <= {n} (the blocks under {under!r}), "
            f"but got {entry!r}. Pass --sites last:{n} for every block."
        )
    if kind == "blocks" and int(span.split("-")[1]) >= n:
        raise CLIError(
            f"{caller}: expected --sites blocks:I-J with J < {n} (the blocks under "
            f"{under!r}), but got {entry!r}. Pass e.g. --sites blocks:0-{n - 1}."
        )


def _close_names(entry: str, names: list[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(entry, [n for n in names if n], n=1, cutoff=0.75)
    return close[0] if close else None


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

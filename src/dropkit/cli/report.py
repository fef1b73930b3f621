"""``dropkit report``: re-render ``report.html`` from a ``metrics.json``.

The rendering is :func:`dropkit.report.render`; this module checks the paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from dropkit.cli._common import CLIError, command_parser, writable_folder


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def main(argv: list[str]) -> int:
    """``dropkit report``: render report.html from a metrics.json; returns the exit code."""
    p = command_parser(
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

"""``dropkit audit MODEL``: the dropout sites of a model as a table, totals and warnings.

The sites come from :func:`dropkit.find_dropout`. A site is *reachable by
module-only MC* when switching its own dropout module to training mode makes
it drop - the recipe of libraries that call ``.train()`` on ``nn.Dropout``
modules. Attention dropout read by a fused attention from its parent's
``training`` flag, and rates kept as float attributes (Llama's
``attention_dropout``), are not: only :func:`dropkit.mc_mode` switches them.
See Gal & Ghahramani (2016) for MC dropout, Li et al. (2019), "Understanding
the Disharmony between Dropout and Batch Normalization", for the BatchNorm
warning.

Why the audit lives here and not in ``dropkit.sites``: its placement warnings
come from :func:`dropkit.training.check_placement`, and ``sites`` is core,
which never imports ``training`` (tests/test_architecture.py).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from dropkit.cli._common import (
    P_HELP,
    SITES_HELP,
    ShellSites,
    apply_rates,
    command_parser,
    parse_rates,
    parse_sites,
    selected_sites,
)

HIGH_P = 0.5
_CALLER = "dropkit audit"


@dataclass
class Finding:
    """One warning of the audit.

    Attributes:
        code: Stable identifier (``no-sites``, ``all-zero``, ``module-mc-unreachable``,
            ``train-mode``, ``high-rate``, ``placement``, ``no-knob``).
        message: One sentence: what is wrong and what to do.
    """

    code: str
    message: str


@dataclass
class Audit:
    """The result of auditing one model.

    Attributes:
        model: The ``MODEL`` argument.
        cls: The model's class name.
        params: Number of parameters.
        training: Whether the model is in training mode.
        selection: The ``--sites`` entries the audit is restricted to; None
            for every site.
        sites: One JSON-ready dict per (selected) site (path, name, kind, p,
            active, control, gate, module_mc).
        totals: Site count per kind, over the listed sites.
        warnings: The findings (over the listed sites; BatchNorm placement
            findings are about the whole model).
    """

    model: str
    cls: str
    params: int
    training: bool
    selection: list[str] | None = None
    sites: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    warnings: list[Finding] = field(default_factory=list)

    def to_json(self) -> str:
        """The audit as one JSON document."""
        return json.dumps(asdict(self), indent=2)


def _module_mc(site: Any) -> bool:
    return site.control == "module" and (not site.gate_paths or site.gate_paths[0] == site.path)


def _placement(model: nn.Module) -> list[Finding]:
    from dropkit.training import check_placement

    # Only the BatchNorm findings: the all-zero case is reported as "all-zero".
    return [
        Finding("placement", str(w).removeprefix("check_placement: "))
        for w in check_placement(model, warn=False)
        if "BatchNorm" in str(w)
    ]


def audit_model(model: nn.Module, name: str, *, sites: ShellSites = None) -> Audit:
    """Find every dropout site of ``model`` (or the selected ones) and judge the set.

    Args:
        model: The model to audit (left unchanged).
        name: How the user named the model (shown in the output).
        sites: From :func:`~dropkit.cli._common.parse_sites`: list and judge
            only these sites (None: every site).

    Returns:
        The :class:`Audit`.

    Raises:
        CLIError: If a ``sites`` entry selects no site of the model.
    """
    from dropkit.sites import find_dropout

    found = find_dropout(model)
    selected = selected_sites(_CALLER, model, sites, name, found=found)
    audit = Audit(
        model=name,
        cls=type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        training=model.training,
        selection=None if sites is None else [sites] if isinstance(sites, str) else list(sites),
    )
    for s in selected:
        audit.sites.append(
            {
                "path": s.path,
                "name": s.name,
                "kind": s.kind,
                "p": s.p,
                "active": s.active,
                "control": s.control,
                "gate": s.gate_paths[0] if s.gate_paths else None,
                "module_mc": _module_mc(s),
            }
        )
    audit.totals = dict(Counter(s.kind for s in selected))
    audit.warnings = _findings(model, selected, selected=sites is not None)
    return audit


def _findings(model: nn.Module, sites: list[Any], *, selected: bool = False) -> list[Finding]:
    out: list[Finding] = []
    if not sites:
        out.append(
            Finding(
                "no-sites",
                "No dropout site found: MC dropout has nothing to sample. Add dropout with "
                "dropkit.nn.ClassifierHead or set rates with dropkit.set_dropout(model, 0.1).",
            )
        )
    elif all(s.p == 0 for s in sites):
        out.append(
            Finding(
                "all-zero",
                f"Every dropout rate {'of the --sites selection ' if selected else ''}is 0 "
                f"({len(sites)} sites): training is unregularised and MC "
                "dropout would return one deterministic prediction. Set a rate with "
                "dropkit.set_dropout(model, 0.1), or from the shell with --p "
                f"{sorted({s.kind for s in sites})[0]}=0.1 (dropkit predict / audit).",
            )
        )
    hidden = [s for s in sites if s.p > 0 and not _module_mc(s)]
    if hidden:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(Counter(s.kind for s in hidden).items()))
        out.append(
            Finding(
                "module-mc-unreachable",
                f"{len(hidden)} sites ({kinds}) are switched by another module's training flag "
                "or a float attribute, so MC dropout that only turns on nn.Dropout modules "
                "never samples them. Use dropkit.mc_mode / dropkit.mc_predict, which do.",
            )
        )
    if model.training and any(s.p > 0 for s in sites):
        out.append(
            Finding(
                "train-mode",
                "The model is in training mode: dropout is active at inference. Call "
                "model.eval() for deterministic predictions, or dropkit.mc_mode for MC.",
            )
        )
    high = [s for s in sites if s.p > HIGH_P]
    if high:
        out.append(
            Finding(
                "high-rate",
                f"{len(high)} sites drop more than half their inputs (max p = "
                f"{max(s.p for s in high):.2f}); rates above {HIGH_P} rarely help outside "
                "small dense layers. Check with dropkit.training.recommend_rate.",
            )
        )
    knobless = [s for s in sites if s.control == "functional"]
    if knobless:
        out.append(
            Finding(
                "no-knob",
                f"{len(knobless)} sites call dropout functionally with a fixed rate; "
                "dropkit.set_dropout cannot change them. Replace the call with a module.",
            )
        )
    out.extend(_placement(model))
    return out


def _row(site: dict[str, Any]) -> tuple[str, ...]:
    control = site["control"] + ("" if site["module_mc"] else " *")
    return (
        site["name"] or "(root)",
        site["kind"],
        f"{site['p']:.3g}",
        control,
        "yes" if site["active"] else "no",
    )


_HEADERS = ("path", "kind", "p", "control", "active")


def format_plain(audit: Audit) -> str:
    """The audit as plain text (aligned columns), for pipes and logs."""
    lines = [_title(audit), ""]
    rows = [_HEADERS, *(_row(s) for s in audit.sites)]
    if audit.sites:
        widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADERS))]
        for k, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
    lines.append(_totals(audit))
    if any(not s["module_mc"] for s in audit.sites):
        lines.append("* not switched by the site's own module: module-only MC misses it")
    if audit.warnings:
        lines += ["", "warnings:"]
        lines += [f"  ! [{w.code}] {w.message}" for w in audit.warnings]
    return "\n".join(lines)


def _title(audit: Audit) -> str:
    mode = "training" if audit.training else "eval"
    title = f"{audit.model}: {audit.cls}, {audit.params:,} parameters, {mode} mode"
    if audit.selection is not None:
        title += f"; --sites {','.join(audit.selection)}"
    return title


def _totals(audit: Audit) -> str:
    if not audit.totals:
        return "totals: no dropout sites"
    parts = ", ".join(f"{k} {n}" for k, n in sorted(audit.totals.items()))
    active = sum(s["active"] for s in audit.sites)
    return f"totals: {parts} ({len(audit.sites)} sites, {active} active now)"


def print_audit(audit: Audit, *, use_rich: bool | None = None) -> None:
    """Print the audit to stdout, with rich tables when rich is installed.

    Args:
        audit: The audit to show.
        use_rich: Force (True) or refuse (False) rich; by default use it when
            it is importable.
    """
    if use_rich is not False:
        try:
            from rich.console import Console
            from rich.markup import escape
            from rich.table import Table
        except ImportError:
            if use_rich:
                raise
            use_rich = False
    if use_rich is False:
        print(format_plain(audit))
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=_title(audit), title_justify="left", header_style="bold")
    for h in _HEADERS:
        table.add_column(h, justify="right" if h == "p" else "left")
    for s in audit.sites:
        style = None if s["module_mc"] else "yellow"
        table.add_row(*_row(s), style=style)
    console.print(table)
    console.print(_totals(audit), highlight=False)
    if any(not s["module_mc"] for s in audit.sites):
        console.print("* not switched by the site's own module: module-only MC misses it")
    for w in audit.warnings:
        console.print(f"[bold red]![/] {escape(f'[{w.code}] {w.message}')}", highlight=False)


# -- the command ------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``dropkit audit MODEL``: print the audit; returns the exit code."""
    p = command_parser(
        "audit",
        "List every dropout site of a model (path, kind, p, control, active), the\n"
        "totals per kind and warnings: all rates 0, sites that module-only MC dropout\n"
        "cannot reach, dropout feeding BatchNorm, training mode, very high rates.\n\n"
        "MODEL is a local Hugging Face folder (with config.json), a timm model name\n"
        "(built with random weights, nothing downloaded) or package.module:factory.\n\n"
        "--sites lists and totals only the selected sites (warnings judge those; the\n"
        "BatchNorm placement check looks at the whole model); with --p it also limits\n"
        "which rates change.",
        "  dropkit audit path/to/bert-folder\n"
        "  dropkit audit vit_tiny_patch16_224 --json\n"
        "  dropkit audit vit_tiny_patch16_224 --p element=0.1   # the sites after setting rates\n"
        "  dropkit audit path/to/bert-folder --sites head --sites attention --json\n"
        "  dropkit audit vit_tiny_patch16_224 --sites last:2 --p 0.1  # last 2 blocks\n"
        "  dropkit audit mypkg.models:build_model --plain\n",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--plain", action="store_true", help="plain text even if rich is installed")
    p.add_argument("--p", action="append", default=[], metavar="KIND=P", help=P_HELP)
    p.add_argument("--sites", action="append", default=[], metavar="ENTRY", help=SITES_HELP)
    args = p.parse_args(argv)
    rates = parse_rates(_CALLER, args.p)
    sites = parse_sites(_CALLER, args.sites)
    from dropkit.cli._models import load_model
    from dropkit.sites import find_dropout

    loaded = load_model(args.model, caller=_CALLER)
    if sites is not None and rates is not None:  # every entry selects a site before a rate changes
        selected_sites(_CALLER, loaded.model, sites, args.model, found=find_dropout(loaded.model))
    apply_rates(_CALLER, loaded.model, rates, sites)
    audit = audit_model(loaded.model, args.model, sites=sites)
    if args.json:
        print(audit.to_json())
    else:
        print_audit(audit, use_rich=False if args.plain else None)
    return 0

"""``dropkit demo``: the main job on scikit-learn's digits (:mod:`dropkit.demo`)."""

from __future__ import annotations

from dropkit.cli._common import CLIInterrupted, command_parser, progress_enabled, writable_folder


def main(argv: list[str]) -> int:
    """``dropkit demo``: train, compare and report on digits; returns the exit code."""
    p = command_parser(
        "demo",
        "Train a small MLP on scikit-learn's digits (classes 0-4; 5-9 held out as\n"
        "out-of-distribution) with no dropout, fixed dropout, a schedule and\n"
        "ConcreteDropout; compare MC dropout with deterministic softmax, temperature\n"
        "scaling, a deep ensemble and Laplace; sweep p; write report.html,\n"
        "metrics.json and config.json (all three together at the end, so an\n"
        "interrupted run leaves the folder as it was). Fully offline.",
        "  dropkit demo                       # full run into out/demo\n"
        "  dropkit demo --quick --out /tmp/d  # smaller run: fewer epochs, members and samples\n"
        "  dropkit demo --seed 1 --out out/seed1\n",
    )
    p.add_argument("--out", default="out/demo", help="output folder (created if missing)")
    p.add_argument("--quick", action="store_true", help="fewer epochs, members and samples")
    p.add_argument("--seed", type=int, default=0, help="seed of data split, init and masks")
    args = p.parse_args(argv)
    # the heavy import first: a Ctrl-C during it finds no folder made yet
    from dropkit.demo import DemoInterrupted, run_demo

    out = writable_folder("dropkit demo", args.out)
    untouched = CLIInterrupted(
        f"interrupted before any output was written; {str(out)!r} is as it was before "
        "this run (the demo writes its three files together at the end). Re-run to finish."
    )
    try:
        paths = run_demo(out, quick=args.quick, seed=args.seed, progress=progress_enabled())
    except DemoInterrupted as exc:
        if exc.committed:
            raise CLIInterrupted(
                f"interrupted after this run's report.html, metrics.json and config.json were "
                f"all written to {str(out)!r}; nothing is missing."
            ) from None
        raise untouched from None
    except KeyboardInterrupt:  # before run_demo could stage anything
        raise untouched from None
    for label, path in paths.items():
        print(f"{label:>8}: {path}")
    return 0

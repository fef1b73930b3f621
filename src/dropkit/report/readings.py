"""One-line readings of each report figure, computed from ``metrics.json``.

Every sentence is derived from the numbers it describes, so a reading can
never disagree with its plot. The first entry of ``methods`` is taken as the
reference baseline (the demo puts deterministic softmax first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def gap(setting: dict[str, Any]) -> float:
    """Final validation loss minus final training loss of one training setting."""
    return float(setting["val_loss"][-1] - setting["train_loss"][-1])


def _is_reference(setting: dict[str, Any]) -> bool:
    return all(float(p) == 0.0 for p in setting.get("p", [1.0]))


def learning_curves(settings: Sequence[dict[str, Any]]) -> str:
    """Which setting closed the train/validation gap, and by how much."""
    refs = [s for s in settings if _is_reference(s)]
    others = [s for s in settings if not _is_reference(s)]
    best_val = min(settings, key=lambda s: s["val_loss"][-1])
    tail = f"lowest final validation NLL: {best_val['name']} ({_f(best_val['val_loss'][-1])})."
    if not refs or not others:
        narrow = min(settings, key=gap)
        return f"Smallest final train/validation gap: {narrow['name']} ({_f(gap(narrow))}); {tail}"
    ref = refs[0]
    narrow = min(others, key=gap)
    if gap(narrow) < gap(ref):
        head = (
            f"{narrow['name']} closed the train/validation gap from {_f(gap(ref))} "
            f"({ref['name']}) to {_f(gap(narrow))}"
        )
    else:
        head = (
            f"No dropout setting narrowed the train/validation gap below {ref['name']}'s "
            f"{_f(gap(ref))} (smallest: {narrow['name']}, {_f(gap(narrow))})"
        )
    return f"{head}; {tail}"


def reliability(methods: Sequence[dict[str, Any]]) -> str:
    """Best-calibrated method against the reference baseline."""
    ref = methods[0]
    best = min(methods, key=lambda m: m["ece"])
    if best is ref:
        return f"Best calibrated: {ref['name']} (ECE {_f(ref['ece'])}); no method improved on it."
    worst = max(methods, key=lambda m: m["ece"])
    return (
        f"Best calibrated: {best['name']} (ECE {_f(best['ece'])}, vs {_f(ref['ece'])} for "
        f"{ref['name']}); least calibrated: {worst['name']} ({_f(worst['ece'])})."
    )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return float(ordered[mid - 1] + ordered[mid]) / 2


def uncertainty_histograms(methods: Sequence[dict[str, Any]], ood: str) -> str:
    """Which score separates in-distribution from held-out inputs best."""
    chosen = [m for m in methods if m.get("scores_in") and m.get("scores_out")]
    ref = chosen[0]
    best = max(chosen, key=lambda m: m["auroc"])
    med_in, med_out = _median(best["scores_in"]), _median(best["scores_out"])
    versus = "" if best is ref else f" vs {_f(ref['auroc'])} for {ref['name']}"
    return (
        f"{best['name']} separates {ood} best (AUROC {_f(best['auroc'])}{versus}); "
        f"its median {best.get('ood_score', 'score')} is {_f(med_in)} in-distribution "
        f"and {_f(med_out)} on {ood}."
    )


def risk_at(curve: dict[str, Sequence[float]], coverage: float) -> float:
    """Risk at ``coverage`` by linear interpolation on the risk-coverage curve."""
    pairs = sorted(zip(curve["coverage"], curve["risk"]))
    if coverage <= pairs[0][0]:
        return float(pairs[0][1])
    for (c0, r0), (c1, r1) in zip(pairs, pairs[1:]):
        if c0 <= coverage <= c1:
            w = 0.0 if c1 == c0 else (coverage - c0) / (c1 - c0)
            return float(r0 + w * (r1 - r0))
    return float(pairs[-1][1])


def risk_coverage(methods: Sequence[dict[str, Any]]) -> str:
    """Lowest AURC, and what abstaining on 20% of inputs buys that method."""
    chosen = [m for m in methods if m.get("risk_coverage")]
    best = min(chosen, key=lambda m: m["aurc"])
    full = risk_at(best["risk_coverage"], 1.0)
    eighty = risk_at(best["risk_coverage"], 0.8)
    errors = [
        c for c, r in zip(best["risk_coverage"]["coverage"], best["risk_coverage"]["risk"]) if r > 0
    ]
    if errors and errors[0] > 0.8:
        return (
            f"Lowest AURC: {best['name']} ({best['aurc']:.3g}); it makes no error on its "
            f"{100 * errors[0]:.0f}% most confident inputs, and {_f(100 * full, 1)}% overall."
        )
    return (
        f"Lowest AURC: {best['name']} ({best['aurc']:.3g}); abstaining on its 20% "
        f"least-confident inputs cuts its error from {_f(100 * full, 1)}% to "
        f"{_f(100 * eighty, 1)}%."
    )


def sweep(section: dict[str, Any]) -> str:
    """Best rate of the sweep against no dropout (p = 0) when it was tried."""
    trials = section["trials"]
    sign = 1.0 if section["lower_is_better"] else -1.0
    best = min(trials, key=lambda t: sign * t["value"])
    metric = section["metric"]
    zero = [t for t in trials if float(t["p"]) == 0.0]
    text = f"Best p = {best['p']:.2g} ({metric} {_f(best['value'])})"
    if zero and zero[0] is not best:
        text += f"; without dropout (p = 0) {_f(zero[0]['value'])}"
    worst = max(trials, key=lambda t: sign * t["value"])
    if worst is not best and (not zero or worst is not zero[0]):
        text += f"; worst p = {worst['p']:.2g} ({_f(worst['value'])})"
    return text + f" over {len(trials)} trials."


def first_below(samples: Sequence[int], values: Sequence[float], tol: float) -> int | None:
    """First T from which every later value is at most ``tol`` (None if never)."""
    found = None
    for t, v in zip(reversed(samples), reversed(values)):
        if v > tol:
            break
        found = t
    return None if found is None else int(found)


def convergence(section: dict[str, Any], tol: float = 0.01) -> str:
    """How many MC samples the estimate needs to settle."""
    t, nll, change = section["samples"], section["nll"], section["change"]
    # The last point is the reference itself; judge the others.
    k = first_below(t[:-1], change[:-1], tol) if len(t) > 1 else None
    if k is None:
        head = f"The estimate is still moving at T = {t[-2] if len(t) > 1 else t[-1]}"
    else:
        head = f"From T = {k} on, the mean predictive is within {tol:g} (L1) of the T = {t[-1]} one"
    return f"{head}; NLL is {_f(nll[0])} at T = {t[0]} and {_f(nll[-1])} at T = {t[-1]}."


def headline(metrics: dict[str, Any]) -> str:
    """A one-sentence summary of the methods table."""
    methods = metrics["methods"]
    best_nll = min(methods, key=lambda m: m["nll"])
    best_auroc = max(methods, key=lambda m: m["auroc"])
    cheapest = min(methods, key=lambda m: m["forward_passes"])
    passes = int(cheapest["forward_passes"])
    return (
        f"Best NLL: {best_nll['name']}, {_f(best_nll['nll'])}. Best OOD AUROC: "
        f"{best_auroc['name']}, {_f(best_auroc['auroc'])}. Cheapest: {cheapest['name']}, "
        f"{passes} forward pass{'es' if passes != 1 else ''} per input."
    )

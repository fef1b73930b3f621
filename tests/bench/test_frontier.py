"""``dropkit bench mc --frontier --quick``: runs end to end, writes the JSON, renders the plot."""

from __future__ import annotations

import json

import pytest

from dropkit.bench import _peers, mc
from dropkit.bench._frontier_cases import _VOCAB, text_task
from dropkit.cli import main as cli_main
from dropkit.report import frontier as report_frontier
from dropkit.report.render import render_html
from dropkit.report.schema import SchemaError

pytest.importorskip("transformers")
pytest.importorskip("sklearn")

_METRICS = (
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


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier") / "frontier.json"
    assert mc.main(["--frontier", "--quick", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_json_has_every_model_row_and_metric(quick):
    assert quick["bench"] == "mc-frontier" and quick["quick"] is True
    models = {m["name"]: m for m in quick["models"]}
    assert set(models) == {"minilm", "digits"}
    for name, blocks in (("minilm", 6), ("digits", 4)):
        m = models[name]
        assert m["blocks"] == blocks and m["in_distribution"] and m["shifted"]
        rows = [r for r in m["rows"] if r["kind"] == "dropkit"]
        assert [r["k"] for r in rows] == list(range(blocks + 1))
        assert rows[0]["name"] == "head" and rows[-1]["name"] == "full"
        assert rows[-1]["sites"] is None and rows[1]["sites"] == "last:1"
        for r in m["rows"]:
            for key in _METRICS:
                assert set(r[key]) == {"mean", "std", "median", "values"}
            assert r["cost_x"]["mean"] > 0 and r["ms"]["mean"] > 0
            assert 0.0 <= r["auroc"]["mean"] <= 1.0
        assert {t["target"] for t in m["summary"]["targets"]} >= (
            {"sites='head' <= 1.1x one forward", "last:2 <= 0.5x full MC"}
            if name == "minilm"
            else set()
        )
    assert models["minilm"]["embeddings"]["share"] > 0
    # digits also has a far shift (inverted images) with its own AUROC and 90% rule
    assert all(0.0 <= r["auroc_far"]["mean"] <= 1.0 for r in models["digits"]["rows"])
    assert all(r["auroc_far"]["mean"] is None for r in models["minilm"]["rows"])
    assert models["digits"]["far"] and set(models["digits"]["summary"]["far"]) == {"gain", "row"}
    assert models["minilm"]["summary"]["far"] is None
    assert models["minilm"]["rows"][1]["prefix"] == "backbone"  # head: backbone once
    assert models["minilm"]["rows"][3]["prefix"] == "blocks"  # last:2: 4 blocks once


def test_block_rows_are_exact_and_costs_grow_with_k(quick):
    for m in quick["models"]:
        n, t = m["blocks"], m["samples"]
        rows = [r for r in m["rows"] if r["kind"] == "dropkit"]
        # last:k: the first L - k blocks see each input once, the last k see it T times
        for r in rows[1:-1]:
            assert r["block_rows"] == pytest.approx((n - r["k"] + r["k"] * t) / n, abs=1e-12)
        assert rows[-1]["block_rows"] == t
        assert rows[0]["block_rows"] == 1.0
        if m["name"] != "minilm":
            # A digits forward is a fraction of a millisecond: mc_predict's per-call work
            # (site lookup, mode switching, the plan) outweighs the compute that k adds,
            # so only the exact count above orders its depths.
            continue
        costs = [r["cost_x"]["mean"] for r in rows]
        # MiniLM: each block more adds (T - 1) / L of a forward. One timed call per row
        # on a shared 2-core machine, where a neighbour's burst can double one timing:
        # each depth stays above half the running maximum, and full MC (T forwards of
        # compute) costs more than the head (one).
        for i in range(1, len(costs)):
            assert costs[i] >= 0.5 * max(costs[:i])
        assert costs[-1] > costs[0]


def test_peers_are_skipped_with_a_reason(quick, capsys):
    ok, skipped = _peers.available()
    names = {p.name for p in _peers.PEERS}
    assert {p.name for p in ok} | set(skipped) == names
    assert quick["peers_skipped"] == skipped
    for reason in skipped.values():
        assert reason  # the import error, printed and stored
    peer_rows = {r["name"] for m in quick["models"] for r in m["rows"] if r["kind"] == "peer"}
    assert peer_rows == {p.name for p in ok}


def test_json_is_a_metrics_json_with_a_frontier_section(quick):
    html = render_html(quick)
    assert '<section id="frontier">' in html and "Depth frontier" in html
    assert "dropkit bench mc --frontier" in html
    points = quick["frontier"]["models"][0]["points"]
    assert {p["kind"] for p in points} >= {"softmax", "dropkit"}


def test_frontier_block_is_validated():
    good = {"models": [{"name": "m", "points": [{"name": "head", "kind": "dropkit", "k": 0}]}]}
    with pytest.raises(SchemaError, match=r"expected frontier.models\[0\].points\[0\].cost_x"):
        report_frontier.validate(good)
    good["models"][0]["points"][0].update(cost_x=1.1, auroc=0.7)
    assert report_frontier.validate(good) is good
    bad = {"models": [{"name": "m", "points": [{"name": "x", "kind": "ensemble"}]}]}
    with pytest.raises(
        SchemaError, match=r"points\[0\].kind to be 'softmax', 'dropkit', 'variant'"
    ):
        report_frontier.validate(bad)
    with pytest.raises(SchemaError, match="expected frontier.models to be a non-empty list"):
        report_frontier.validate({"models": []})


def test_text_task_sets_are_disjoint_in_topic():
    data = text_task(40, 20, seed=0)
    finance = set(_VOCAB["finance"][0].split())
    assert len(data["train"][0]) == 40 and set(data["train"][1]) == {0, 1}
    for texts, _ in (data["train"], data["test"]):
        assert not any(finance & set(t.split()) for t in texts)
    assert all(finance & set(t.split()) for t in data["shifted"][0])
    assert text_task(40, 20, seed=0) == data  # seeded


def test_bad_seeds_and_cases_are_one_line_errors(capsys):
    assert cli_main(["bench", "mc", "--frontier", "--quick", "--seeds", "0"]) == 2
    assert "bench mc: expected --seeds to be an integer >= 1, but got 0" in capsys.readouterr().err
    assert cli_main(["bench", "mc", "--frontier", "--cases", "resnet"]) == 2
    assert "bench mc --frontier: expected cases among" in capsys.readouterr().err
    assert cli_main(["bench", "mc", "--frontier", "--quick", "--repeats", "0"]) == 2
    assert "bench mc: expected --repeats to be an integer >= 1, but got 0" in (
        capsys.readouterr().err
    )


def test_every_row_is_timed_as_its_fastest_round(monkeypatch):
    from dropkit.bench import frontier
    from dropkit.bench._frontier_cases import digits_case

    case = digits_case(0, dict(frontier.QUICK))
    calls: list[str] = []
    # seconds per round: the forward's fastest is 2 (median 4, first 5), every row's
    # fastest is 3 (median 8, first 3): only fastest / fastest gives 1.5
    fake = {"forward": [5.0, 2.0, 4.0], "row": [3.0, 9.0, 8.0]}

    def timed(fn, *args, **kwargs):
        name = kwargs.get("sites", "forward")
        calls.append(name)
        value = fn(*args, **kwargs)
        rounds = fake["forward" if name == "forward" else "row"]
        return value, rounds[(calls.count(name) - 1) % 3]

    monkeypatch.setattr(frontier, "_timed", timed)
    out = frontier.run_seed(case, 0, 4, [], repeats=3)
    rows = [r[1] for r in case.rows]
    # rounds interleave: the forward, then every row, three times per batch
    per_batch = ["forward", *rows] * 3
    assert calls == per_batch * (len(case.test) + len(case.shifted) + len(case.far))
    assert out["softmax"]["cost_x"] == 1.0 and out["softmax"]["ms"] == 2000.0
    for name, _sites, _k in case.rows:
        assert out[name]["cost_x"] == 1.5 and out[name]["ms"] == 3000.0


def test_k90_picks_the_smallest_depth_within_90_percent_of_the_gain():
    from dropkit.bench.frontier import k90

    def row(name, kind, k, auroc, cost):
        return {"name": name, "kind": kind, "k": k, "auroc": {"mean": auroc},
                "cost_x": {"mean": cost}}  # fmt: skip

    rows = [
        row("softmax", "softmax", None, 0.80, 1.0),
        row("head", "dropkit", 0, 0.82, 1.1),
        row("last:1", "dropkit", 1, 0.885, 5.0),  # 85% of the gain: not enough
        row("last:2", "dropkit", 2, 0.892, 9.0),  # 92%: the answer
        row("full", "dropkit", 3, 0.90, 20.0),
    ]
    got = k90(rows)
    assert got["gain"] == pytest.approx(0.10)
    assert got["row"]["row"] == "last:2" and got["row"]["k"] == 2
    assert got["row"]["gain_fraction"] == pytest.approx(0.92)
    assert got["row"]["cost_fraction_of_full"] == pytest.approx(0.45)
    rows[-1]["auroc"]["mean"] = 0.79  # full MC below the softmax: no gain to reach
    assert k90(rows) == {"gain": pytest.approx(-0.01), "row": None}

"""bench bayes end to end (quick mode), the report section and the demo's HMC block."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from dropkit.bench import bayes as bench
from dropkit.report import bayes as section
from dropkit.report.render import render_html

pytest.importorskip("pyro")


def run_quick(out, uci, *extra: str) -> int:
    with warnings.catch_warnings():
        # 20-draw chains do not converge: HMC's own R-hat / ESS warnings, nothing else
        warnings.filterwarnings("ignore", r"HMC\.(fit|predict|extend): expected", UserWarning)
        return bench.main(["--quick", "--data-dir", str(uci), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def uci(shared_dir):
    path = shared_dir / "data" / "uci"
    if not (path / "yacht").is_dir():  # the shared data is part of the test setup: fail, never skip
        pytest.fail(f"UCI yacht data not found under {path}; set DROPKIT_SHARED")
    return path


@pytest.fixture(scope="module")
def quick_path(tmp_path_factory, uci):
    out = tmp_path_factory.mktemp("bayes") / "bayes.json"
    assert run_quick(out, uci, "--datasets", "yacht,digits") == 0
    return out


@pytest.fixture(scope="module")
def quick(quick_path):
    return json.loads(quick_path.read_text())


def test_quick_bench_tables(quick):
    assert set(quick["datasets"]) == {"yacht", "digits"}
    yacht = quick["datasets"]["yacht"]
    assert yacht["splits"] == 1 and set(yacht["table"]) == set(bench.REG_METHODS) | {"hmc"}
    hmc = yacht["table"]["hmc"]
    # HMC against itself: identical tensors give exactly 0 distance
    assert hmc["w2_to_hmc"]["mean"] == 0.0
    assert yacht["closest"]["method"] != "hmc"
    rec = yacht["per_split"][0]["methods"]
    best = min((m for m in rec if m != "hmc"), key=lambda m: rec[m]["w2_to_hmc"])
    assert yacht["closest"]["method"] == best
    diag = rec["hmc"]["diagnostics"]
    # 20-draw chains never reach R-hat 1.05: extended once (the quick cap), 40 draws each
    assert diag["extensions"] == bench.QUICK["max_extend"] == 1
    assert diag["samples"] == 2 * bench.QUICK["samples"]
    assert rec["hmc"]["passes"] == bench.QUICK["chains"] * diag["samples"]
    assert rec["hmc"]["diagnostics"]["chains"] == bench.QUICK["chains"]
    assert rec["hmc"]["diagnostics"]["sampler"] == "hmc"
    # the deterministic row shares MC dropout's training but times its own single pass
    det, mc = rec["deterministic"], rec["mc_dropout"]
    assert det["fit_s"] == mc["fit_s"] and (det["passes"], mc["passes"]) == (1, bench.QUICK["mc"])
    assert det["predict_s"] != mc["predict_s"]
    digits = quick["datasets"]["digits"]["per_split"][0]["methods"]
    assert digits["hmc"]["agreement_to_hmc"] == 1.0 and digits["hmc"]["tv_to_hmc"] == 0.0
    assert {"softmax", "softmax+ts", "mc_dropout", "mc_dropout+ts", "ensemble", "laplace"} <= set(
        digits
    )
    assert all(0.0 <= m["tv_to_hmc"] <= 1.0 for m in digits.values())


def test_rerun_resumes_and_refuses_other_settings(quick_path, uci, tmp_path, capsys):
    out = tmp_path / "bayes.json"
    out.write_bytes(quick_path.read_bytes())
    first = json.loads(out.read_text())
    # the same command again: every split is already there, nothing is recomputed
    assert run_quick(out, uci, "--datasets", "yacht,digits") == 0
    assert "[yacht] resuming: 1 split(s) already in" in capsys.readouterr().out
    assert json.loads(out.read_text())["datasets"] == first["datasets"]
    # one more split: split 0 kept as it was, split 1 added
    assert run_quick(out, uci, "--datasets", "yacht", "--splits", "2") == 0
    again = json.loads(out.read_text())["datasets"]
    assert again["yacht"]["per_split"][0] == first["datasets"]["yacht"]["per_split"][0]
    assert [r["split"] for r in again["yacht"]["per_split"]] == [0, 1]
    assert again["digits"] == first["datasets"]["digits"]  # a dataset not run stays
    # other settings would mix two runs in one table: refused, the file untouched
    saved = out.read_bytes()
    with pytest.raises(ValueError, match=r"^bench bayes: expected --out to hold a run with the s"):
        run_quick(out, uci, "--datasets", "yacht", "--samples", "21")
    assert out.read_bytes() == saved
    out.write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot be read as JSON .*Pass another --out\.$"):
        run_quick(out, uci, "--datasets", "yacht")
    assert out.read_text() == "{not json"


def test_bench_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"bench bayes: expected datasets among"):
        bench.main(["--datasets", "mnist", "--out", str(tmp_path / "x.json")])
    with pytest.raises(ValueError, match=r"bench bayes: expected --splits >= 1, but got 0"):
        bench.main(["--splits", "0", "--datasets", "digits", "--out", str(tmp_path / "x.json")])


def test_laplace_regression_is_the_exact_last_layer_posterior(generator):
    # with one hidden ReLU layer frozen, the last layer is Bayesian linear regression
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.0), nn.Linear(4, 1))
    x, xt = torch.randn(30, 3, generator=generator), torch.randn(5, 3, generator=generator)
    y = torch.randn(30, generator=generator)
    mean, var = bench._last_layer_laplace(net, x, y, xt, noise=0.3)
    with torch.no_grad():
        phi = torch.cat([net[:2](x), torch.ones(30, 1)], 1).double()
        phit = torch.cat([net[:2](xt), torch.ones(5, 1)], 1).double()
    # naive: solve the normal equations of the ridge problem, sample-free
    a = phi.T @ phi / 0.3 + torch.eye(5, dtype=torch.float64)
    w = torch.linalg.solve(a, phi.T @ y.double() / 0.3)
    assert torch.allclose(mean, phit @ w, atol=1e-10)
    assert torch.allclose(var, torch.diag(phit @ torch.linalg.solve(a, phit.T)), atol=1e-10)


BLOCK = {
    "ran": True,
    "distances": [
        {"name": "MC dropout", "total_variation": 0.12, "top1_agreement": 0.93},
        {"name": "deep ensemble", "total_variation": 0.05, "top1_agreement": 0.98},
    ],
    "rhat": 1.01,
    "command": "dropkit bench bayes --datasets digits",
}


def test_section_renders_bars_and_reading():
    html = section.section({"bayes": BLOCK})
    assert html.startswith('<section id="bayes"><h2>How Bayesian is it?</h2>')
    assert "Closest to the HMC posterior predictive: deep ensemble (total variation 0.050" in html
    assert "MC dropout is at 0.120 (93% agreement)" in html
    assert "data:image/png;base64," in html and "1.010" in html
    assert section.section({}) is None


def test_section_when_hmc_did_not_run():
    html = section.section(
        {"bayes": {"ran": False, "budget_s": 20.0, "estimate_s": 5000.0, "command": "cmd x"}}
    )
    assert "worst case is about 5000 s, over this run&#x27;s budget of 20 s" in html
    assert "<code>cmd x</code>" in html and "<img" not in html


@pytest.mark.parametrize(
    ("block", "match"),
    [
        ({"ran": "yes"}, r"expected bayes.ran to be true or false, but got 'yes'"),
        ({"ran": True, "distances": []}, r"expected bayes.distances to be a non-empty list"),
        (
            {
                "ran": True,
                "distances": [{"name": "a", "total_variation": 2.0, "top1_agreement": 1}],
            },
            r"expected bayes.distances\[0\].total_variation to be a number in \[0, 1\]",
        ),
        ({"ran": False, "rhat": float("nan")}, r"expected bayes.rhat to be a finite number"),
        ({"ran": True, "distances": ["x"]}, r"expected bayes.distances\[0\].name to be a string"),
    ],
)
def test_section_schema_errors(block, match):
    with pytest.raises(ValueError, match=match):
        section.section({"bayes": block})


def test_demo_block_refuses_over_budget_and_runs_within(generator):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.2), nn.Linear(6, 3))
    x = torch.randn(40, 4, generator=generator)
    y = torch.randint(0, 3, (40,), generator=generator)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = section.demo_block(model, (x, y), x[:10], budget_s=1e-6)
    assert out["ran"] is False and out["estimate_s"] > 1e-6 and out["budget_s"] == 1e-6
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # convergence is not the point
        ran = section.demo_block(
            model, (x, y), x[:10], budget_s=1e9, mc_samples=4, samples=5, warmup=5, max_steps=7
        )
    assert ran["ran"] is True and [r["name"] for r in ran["distances"]] == ["softmax", "MC dropout"]
    section.validate(ran)
    assert "How Bayesian is it?" in section.section({"bayes": ran})


def test_render_html_includes_the_section():
    from tests.report.conftest import small_metrics

    metrics = small_metrics()
    assert "bayes" not in render_html(metrics)
    html = render_html({**metrics, "bayes": BLOCK})
    assert '<a href="#bayes">How Bayesian is it?</a>' in html
    assert '<section id="bayes">' in html


def test_shards_share_one_out_file(uci, tmp_path):
    # two processes at once, one file: each merges its splits under the lock, none is lost
    import subprocess
    import sys

    out = tmp_path / "shared.json"
    cmd = [sys.executable, "-W", "ignore", "-m", "dropkit.cli", "bench", "bayes", "--quick"]
    cmd += ["--data-dir", str(uci), "--out", str(out), "--datasets", "yacht", "--splits", "4"]
    procs = [
        subprocess.Popen([*cmd, "--shard", f"{i}/2"], stdout=subprocess.DEVNULL) for i in (0, 1)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    yacht = json.loads(out.read_text())["datasets"]["yacht"]
    assert [r["split"] for r in yacht["per_split"]] == [0, 1, 2, 3]
    assert yacht["splits"] == 4
    # the table is over all four splits, whichever process wrote last
    rmse = [r["methods"]["hmc"]["rmse"] for r in yacht["per_split"]]
    assert yacht["table"]["hmc"]["rmse"]["mean"] == pytest.approx(sum(rmse) / 4, rel=1e-12)
    # one shard again: its splits are there, nothing is refitted, the file keeps all four
    assert run_quick(out, uci, "--datasets", "yacht", "--splits", "4", "--shard", "1/2") == 0
    assert json.loads(out.read_text())["datasets"]["yacht"]["per_split"] == yacht["per_split"]


@pytest.mark.parametrize("bad", ["2/2", "1", "a/b", "0/0", "-1/2"])
def test_shard_errors_name_the_fix(tmp_path, bad):
    with pytest.raises(ValueError, match=r"^bench bayes: expected --shard I/N with 0 <= I < N"):
        bench.main(["--quick", f"--shard={bad}", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_markdown_tables_from_a_record(quick_path, quick, capsys):
    assert bench.main(["--markdown", "--out", str(quick_path)]) == 0
    text = capsys.readouterr().out
    yacht = quick["datasets"]["yacht"]
    rhat = yacht["per_split"][0]["methods"]["hmc"]["diagnostics"]["predictive_rhat"]["max"]
    assert f"**yacht**, 1 split(s) [0]; HMC worst predictive R-hat {rhat:.4f}" in text
    assert f"(per split: predictive R-hat [{rhat:.4f}], predictive ESS min [" in text
    assert "| method | RMSE | test LL | W2 to HMC | std corr. to HMC | fit s |" in text
    assert "| method | accuracy | NLL | ECE | top-1 agreement with HMC | TV to HMC |" in text
    # every method of each table has exactly one row; HMC's distance to itself is exactly 0
    for name, block in quick["datasets"].items():
        one = bench.markdown({name: block})
        assert all(one.count(f"\n| {method} | ") == 1 for method in block["table"])
        assert one.count("\n| ") == len(block["table"]) + 1  # + the |--- line
    assert "| hmc | " in text and "| 0 ± 0 | 1 ± 0 |" in text
    assert f"closest to HMC: {yacht['closest']['method']} (W2 " in text


def test_markdown_needs_a_record(tmp_path):
    with pytest.raises(ValueError, match=r"^bench bayes: expected --markdown with --out naming"):
        bench.main(["--markdown", "--out", str(tmp_path / "none.json")])

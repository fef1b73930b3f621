"""``dropkit bench mc --quick``: runs end to end and writes the side-by-side JSON."""

from __future__ import annotations

import json

import pytest

from dropkit.bench import mc
from dropkit.cli import main as cli_main

pytest.importorskip("transformers")
pytest.importorskip("sklearn")


def test_quick_bench_writes_every_case(tmp_path, capsys):
    out = tmp_path / "mc.json"
    assert mc.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    cases = {row["case"]: row for row in data["cases"]}
    assert set(cases) == {"minilm", "mlp", "digits"} and data["quick"] is True
    for name in ("minilm", "mlp"):
        row = cases[name]
        assert set(row["seconds"]) == {"deterministic", "naive_loop", "replicate", "dropkit"}
        assert row["x_deterministic"]["deterministic"] == 1.0
        assert row["dropkit_speedup_vs_naive"] > 0
    assert cases["minilm"]["dropkit_prefix"] == "backbone"
    assert cases["mlp"]["dropkit_prefix"] == "sequential"
    digits = cases["digits"]
    assert 10 <= digits["mean_samples_used"] <= digits["samples"]
    assert 0.0 <= digits["argmax_agreement"] <= 1.0 and digits["test_accuracy"] > 0.8
    text = capsys.readouterr().out
    assert "naive_loop" in text and "digits:" in text


def test_unknown_case_is_one_line_error(capsys):
    assert cli_main(["bench", "mc", "--quick", "--cases", "resnet"]) == 2
    assert "bench mc: expected cases among" in capsys.readouterr().err

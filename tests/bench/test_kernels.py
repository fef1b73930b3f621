"""`dropkit bench kernels --quick`: runs end to end and reports what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dropkit.bench import kernels


def test_quick_bench_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "kernels.json"
    assert kernels.main(["--quick", "--repeats", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "dropkit vs F.dropout" in printed and "MiniLM-L6 training" in printed
    rows = {row["numel"]: row for row in data["rows"]}
    assert set(rows) == {100, 10_000, 100_000}
    big = rows[100_000]
    for name in ("F.dropout", "dropkit", "clone"):
        assert big[name]["fwd_ms"] > 0 and big[name]["fwd_bwd_ms"] > 0
    assert big["dropkit"]["saved_bytes"] == 0
    assert big["F.dropout"]["saved_bytes"] >= 100_000
    assert big["speedup_fwd"] == pytest.approx(
        big["F.dropout"]["fwd_ms"] / big["dropkit"]["fwd_ms"]
    )
    assert big["dropkit"]["fwd_sum_bwd_ms"] > 0
    assert big["speedup_fwd_sum_bwd"] == pytest.approx(
        big["F.dropout"]["fwd_sum_bwd_ms"] / big["dropkit"]["fwd_sum_bwd_ms"]
    )
    assert "fwd+sum().backward()" in printed
    fallback = big["dropkit (no numba)"]
    assert fallback["saved_bytes"] == 0  # the pure-torch kernel keeps no mask either
    assert big["fallback_speedup_fwd_bwd"] == pytest.approx(
        big["F.dropout"]["fwd_bwd_ms"] / fallback["fwd_bwd_ms"]
    )
    assert "dropkit (no numba) vs F.dropout" in printed
    assert big["dropkit (no populate)"]["saved_bytes"] == 0  # same kernel, population off
    model = data["model"]
    assert model["swapped"] == 20  # MiniLM-L6 classifier: 1 + 3 per layer + classifier
    assert model["stock_steps_per_s"] > 0 and model["fast_dropout_steps_per_s"] > 0
    assert model["speedup_attention"] == pytest.approx(
        model["fast_dropout_attention_steps_per_s"] / model["stock_steps_per_s"]
    )
    assert "fast_dropout(attention=True)" in printed


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"expected --repeats >= 1, but got 0\. Pass a positive"):
        kernels.main(["--quick", "--repeats", "0", "--no-model"])

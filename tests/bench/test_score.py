"""dropkit bench score: the local engine's record, and the paper estimate by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", reason="dropkit score writes Parquet: needs the 'ray' extra")

from dropkit.bench.score import estimate, main  # noqa: E402


def test_quick_local_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "score.json"
    assert main(["--quick", "--engines", "local", "--cases", "mlp", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    mlp = record["cases"]["mlp"]
    assert (mlp["rows"], mlp["block_rows"], mlp["blocks"], mlp["samples"]) == (512, 128, 4, 20)
    assert mlp["local_rows_per_s"] == pytest.approx(mlp["rows"] / mlp["local_s"], rel=1e-12)
    assert "machine" in record and "mlp" in capsys.readouterr().out


def test_estimate_is_work_over_workers_plus_startup() -> None:
    # 1M rows at 2 ms each, 250 blocks at 0.1 s overhead, over 100 x 2 workers, 30 s start-up
    e = estimate(2e-3, 0.1, 4000, 30.0)
    wall = (1_000_000 * 2e-3 + 250 * 0.1) / 200 + 30.0
    assert e["wall_s"] == pytest.approx(wall, rel=1e-12)
    assert e["rows_per_s"] == pytest.approx(1_000_000 / wall, rel=1e-12)
    assert e["node_hours"] == pytest.approx(100 * wall / 3600, rel=1e-12)


def test_bad_case_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"expected --cases among mlp, minilm-head, minilm-full"):
        main(["--cases", "resnet"])

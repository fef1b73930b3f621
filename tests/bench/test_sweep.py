from __future__ import annotations

import json
from pathlib import Path

from dropkit.bench import sweep as bench_sweep


def test_quick_bench_sweep(uci_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep.json"
    assert bench_sweep.main(["--quick", "--data-dir", str(uci_dir), "--out", str(out)]) == 0
    assert "batched, fused (numba)" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["models"] == 48 and result["sequential_models_timed"] == 3
    assert set(result["model_steps_per_s"]) == {"numba", "torch", "sequential"}
    assert all(v > 0 for v in result["model_steps_per_s"].values())
    # same streams: batched and one-by-one weights differ by float32 rounding only
    assert result["max_weight_diff_vs_sequential"] < 1e-5

"""bench uci --engine: argument errors, pinned (Ray runs: tests/integrations/test_ray.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropkit.bench.uci import main


def test_address_needs_the_ray_engine(tmp_path: Path, shared_dir: Path) -> None:
    argv = ["--quick", "--data-dir", str(shared_dir / "data" / "uci"), "--out", str(tmp_path)]
    with pytest.raises(ValueError, match=r"expected --address / --workers only with --engine ray"):
        main([*argv, "--address", "127.0.0.1:1"])


def test_unreachable_address_is_refused_before_any_work(tmp_path: Path, shared_dir: Path) -> None:
    pytest.importorskip(
        "ray", reason="the 'ray' extra is not installed: pip install 'dropkit[ray]'"
    )
    argv = ["--quick", "--data-dir", str(shared_dir / "data" / "uci"), "--out", str(tmp_path)]
    with pytest.raises(ValueError, match=r"expected a reachable Ray cluster at --address, but got"):
        main([*argv, "--engine", "ray", "--address", "127.0.0.1:1"])
    assert not list(tmp_path.rglob("split_*.json"))  # nothing ran

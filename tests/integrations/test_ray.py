"""Ray engines on a two-node Ray cluster on this machine (loopback only).

One module-scoped fixture starts a head node and a worker node with
``ray.cluster_utils.Cluster`` (1 CPU each, small object stores, no
dashboard, 127.0.0.1) and stops them at the end. Against it: score_pool with
``engine="ray"`` equals ``engine="local"`` and ``mc_predict`` for any worker
count and block size; ``mc_scores`` (Ray Data) equals ``mc_predict``; a
worker node removed mid-run leaves a complete, identical output with every
block once; ``bench uci --engine ray`` units equal the local protocol.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

# Before ray is imported: this machine's cluster stays on 127.0.0.1 (Ray otherwise swaps
# loopback addresses for the machine's outward one), and no auth token for a test cluster.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ray = pytest.importorskip(
    "ray", reason="the 'ray' extra is not installed: pip install 'dropkit[ray]'"
)
pytest.importorskip(
    "pyarrow", reason="the 'ray' extra is not installed: pip install 'dropkit[ray]'"
)
from ray.cluster_utils import Cluster  # noqa: E402

from dropkit import mc_predict  # noqa: E402
from dropkit.score import score_pool  # noqa: E402
from dropkit.score.store import finished_blocks  # noqa: E402

SCORE_TESTS = Path(__file__).resolve().parents[1] / "score"
sys.path.insert(0, str(SCORE_TESTS))
import _score_models as models  # noqa: E402

pytestmark = pytest.mark.timeout(300)

# Float64 model: Ray blocks run matrix products of other shapes than one
# mc_predict call, so sums run in other orders; 1e-12 is thousands of
# float64 eps over 16 hidden units, far below what a changed mask moves (> 1e-3).
TOL = 1e-12
FIELDS = ("predictive_entropy", "expected_entropy", "mutual_information")
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}


@pytest.fixture(scope="module")
def cluster() -> object:
    c = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={**NODE, "include_dashboard": False},
    )
    worker = c.add_node(**NODE)
    ray.init(
        address=c.address,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": str(SCORE_TESTS)}},
    )
    c.wait_for_nodes()
    c.worker = worker
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def table_arrays(table: object) -> dict[str, np.ndarray]:
    out = {}
    for name in table.column_names:  # type: ignore[attr-defined]
        col = table.column(name).combine_chunks()  # type: ignore[attr-defined]
        if name == "probs":
            out[name] = np.asarray(col.flatten().to_numpy()).reshape(len(col), -1)
        else:
            out[name] = np.asarray(col.to_numpy())
    return out


def assert_close(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    oa, ob = np.argsort(a["row_id"]), np.argsort(b["row_id"])
    assert np.array_equal(a["row_id"][oa], b["row_id"][ob])
    assert np.array_equal(a["prediction"][oa], b["prediction"][ob])
    for name in ("probs", "predictive_entropy", "expected_entropy", "mutual_information"):
        np.testing.assert_allclose(a[name][oa], b[name][ob], rtol=0, atol=TOL)


def reference(x: np.ndarray, samples: int, seed: int) -> dict[str, np.ndarray]:
    r = mc_predict(models.mlp(), torch.from_numpy(x), samples=samples, seed=seed)
    return {
        "row_id": np.arange(x.shape[0]),
        "prediction": r.mean.argmax(-1).numpy(),
        "probs": r.mean.numpy(),
        "predictive_entropy": r.predictive_entropy.numpy(),
        "expected_entropy": r.expected_entropy.numpy(),
        "mutual_information": r.mutual_information.numpy(),
    }


X = np.random.default_rng(0).standard_normal((41, 4))


@pytest.mark.parametrize("workers,block_rows", [(1, 41), (2, 6)])
def test_ray_equals_local_equals_mc_predict(cluster: object, workers: int, block_rows: int) -> None:
    ref = reference(X, 6, 5)
    local = score_pool(models.mlp(), X, samples=6, seed=5, block_rows=9, batch_size=4)
    on_ray = score_pool(
        models.mlp, X, samples=6, seed=5, block_rows=block_rows, engine="ray", workers=workers
    )
    assert on_ray.blocks == -(-41 // block_rows)
    assert_close(table_arrays(local.read()), ref)
    assert_close(table_arrays(on_ray.read()), ref)


# Ray Data's DataContext warns about its own deprecated fields (use_push_based_shuffle,
# use_polars, ...) whenever it copies itself (ray/data/context.py); dropkit sets none.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_mc_scores_ray_data_equals_mc_predict(cluster: object) -> None:
    from dropkit.integrations.ray import mc_scores

    ds = ray.data.from_items([{"row_id": i, "x": X[i]} for i in range(X.shape[0])])
    out = mc_scores(ds, models.mlp, samples=6, seed=5, batch_size=8, workers=2)
    rows = out.take_all()  # one dict per row (no pandas: Ray's to_pandas trips its warnings)
    got = {
        name: np.stack([np.asarray(r[name]) for r in rows])
        for name in ("row_id", "prediction", "probs", *FIELDS)
    }
    assert_close(got, reference(X, 6, 5))


def test_uci_units_on_ray_equal_local(
    cluster: object, tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dropkit.bench.uci import run_units_on_ray
    from dropkit.bench.uci.data import load_uci
    from dropkit.bench.uci.protocol import ProtocolSettings, run_uci

    data = load_uci(shared_dir / "data" / "uci", "yacht")
    settings = ProtocolSettings(epochs=3, samples=20)
    local = run_uci(data, [0, 1], tmp_path / "local", settings)
    run_units_on_ray([data], {"yacht": [0, 1]}, tmp_path / "ray", settings, None, None, print)
    # the Ray run's split files are the local engine's: a local run resumes it with no work
    on_ray = run_uci(data, [0, 1], tmp_path / "ray", settings)
    assert not (tmp_path / "ray" / "yacht" / "grid.json").exists()  # nothing was retrained
    for a, b in zip(local, on_ray):
        assert (a["p"], a["tau"], a["rmse"], a["ll"]) == (b["p"], b["tau"], b["rmse"], b["ll"])
    # resuming a finished folder queues nothing: not even a Ray session is opened
    import dropkit.integrations.ray as ray_integration

    def no_session(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run opened a Ray session")

    monkeypatch.setattr(ray_integration, "session", no_session)
    run_units_on_ray([data], {"yacht": [0, 1]}, tmp_path / "ray", settings, None, None, print)


def test_worker_node_removed_mid_run_output_complete_and_identical(
    cluster: object, tmp_path: Path
) -> None:
    x = np.random.default_rng(1).standard_normal((60, 4))
    out = tmp_path / "s.parquet"
    blocks = 20
    seen: dict[str, int] = {}

    def remove_when_two_blocks_are_done() -> None:
        # (the side thread only watches files and stops a node: scoring stays in the main thread)
        deadline = time.monotonic() + 120
        while len(finished_blocks(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["done_at_removal"] = len(finished_blocks(out))
        cluster.remove_node(cluster.worker)  # type: ignore[attr-defined]

    remover = threading.Thread(target=remove_when_two_blocks_are_done)
    remover.start()
    run = score_pool(
        models.Slow(0.05), x, out=out, samples=4, seed=2, block_rows=3, engine="ray", workers=2
    )
    remover.join(timeout=120)
    assert not remover.is_alive()
    assert 2 <= seen["done_at_removal"] < blocks  # the node went away while blocks were in flight
    assert finished_blocks(out) == set(range(blocks))
    table = run.read()
    ids = table.column("row_id").to_pylist()
    assert sorted(ids) == list(range(60)) and len(set(ids)) == 60  # every row once
    ref = score_pool(models.Slow(0.0), x, samples=4, seed=2, block_rows=60).read()
    assert_close(table_arrays(table), table_arrays(ref))
    cluster.worker = cluster.add_node(**NODE)  # type: ignore[attr-defined]

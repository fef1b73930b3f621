"""score_pool / dropkit score with the local engine: pools, same numbers, resume, top-K, errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pa = pytest.importorskip("pyarrow", reason="dropkit score writes Parquet: needs the 'ray' extra")
import pyarrow.parquet as pq  # noqa: E402

from dropkit import mc_predict  # noqa: E402
from dropkit.cli import main  # noqa: E402
from dropkit.score import open_pool, score_pool  # noqa: E402
from dropkit.score.store import MANIFEST, finished_blocks  # noqa: E402
from dropkit.score.topk import merge, top_k  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _score_models as models  # noqa: E402

# Float64 model and inputs: score_pool runs blocks of other shapes than one
# mc_predict call over the whole pool, so matrix products sum in other orders.
# Each output is a handful of float64 operations over 16 hidden units, then
# log/softmax: 1e-12 is ~4500 eps(float64) = far above that rounding and far
# below any real difference (a changed mask moves probabilities by > 1e-3).
TOL = 1e-12
FIELDS = ("predictive_entropy", "expected_entropy", "mutual_information", "variation_ratio")


def pool_x(n: int = 53) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 4))


def probs_of(table: pa.Table) -> np.ndarray:
    col = table.column("probs").combine_chunks()
    return np.asarray(col.flatten().to_numpy()).reshape(len(table), -1)


def check_same(table: pa.Table, ref: object, ids: np.ndarray) -> None:
    got = np.asarray(table.column("row_id").to_numpy())
    order = np.argsort(got)
    assert np.array_equal(got[order], np.sort(ids))
    pos = {int(i): k for k, i in enumerate(ids)}
    take = np.array([pos[int(i)] for i in got[order]])
    np.testing.assert_allclose(probs_of(table)[order], ref.mean.numpy()[take], rtol=0, atol=TOL)
    for name in FIELDS:
        want = getattr(ref, name).numpy()[take]
        np.testing.assert_allclose(
            np.asarray(table.column(name).to_numpy())[order], want, rtol=0, atol=TOL
        )
    assert np.array_equal(
        np.asarray(table.column("prediction").to_numpy())[order], ref.mean.argmax(-1).numpy()[take]
    )


@pytest.mark.parametrize("block_rows,batch_size", [(7, 3), (53, 256), (100, 5)])
def test_local_equals_mc_predict_any_block_and_batch(block_rows: int, batch_size: int) -> None:
    x = pool_x()
    net = models.mlp()
    ref = mc_predict(net, torch.from_numpy(x), samples=9, seed=3)
    run = score_pool(net, x, samples=9, seed=3, block_rows=block_rows, batch_size=batch_size)
    assert run.blocks == -(-53 // block_rows) and run.blocks_scored == run.blocks
    check_same(run.read(), ref, np.arange(53))


def test_row_keyed_masks_a_row_scores_the_same_in_any_subset(tmp_path: Path) -> None:
    # rows 10..19 scored alone (ids from a row_id column) equal the same rows in the full pool
    x = pool_x()
    net = models.mlp()
    full = score_pool(net, x, samples=6, seed=1, block_rows=16).read()
    ids = np.arange(10, 20)
    pq.write_table(
        pa.table({"row_id": ids, "x": pa.array(list(x[10:20]), pa.list_(pa.float64()))}),
        tmp_path / "sub.parquet",
    )
    sub = score_pool(net, tmp_path / "sub.parquet", samples=6, seed=1, block_rows=3).read()
    assert sub.column("row_id").to_pylist() == ids.tolist()
    np.testing.assert_allclose(probs_of(sub), probs_of(full)[10:20], rtol=0, atol=TOL)
    # and another seed gives other scores (the seed reaches the masks)
    other = score_pool(net, x[10:20], samples=6, seed=2).read()
    assert np.abs(probs_of(other) - probs_of(sub)).max() > 1e-3


def test_regression_columns_match_mc_predict() -> None:
    x = pool_x(20)
    net = models.regressor()
    ref = mc_predict(net, torch.from_numpy(x), samples=7, seed=0, output="regression", tau=4.0)
    table = score_pool(net, x, samples=7, seed=0, output="regression", tau=4.0, block_rows=6).read()
    assert table.column_names == ["row_id", "mean", "epistemic_var", "aleatoric_var"]
    np.testing.assert_allclose(table.column("mean").to_numpy(), ref.mean[:, 0], rtol=0, atol=TOL)
    np.testing.assert_allclose(
        table.column("epistemic_var").to_numpy(), ref.epistemic_var[:, 0], rtol=0, atol=TOL
    )
    assert np.all(table.column("aleatoric_var").to_numpy() == 0.25)


@pytest.mark.parametrize("fmt", ["npy", "pt", "pt-list", "parquet-list", "parquet-cols", "glob"])
def test_pool_formats_read_the_same_rows(tmp_path: Path, fmt: str) -> None:
    x = pool_x(12)
    if fmt == "npy":
        np.save(tmp_path / "p.npy", x)
        source = str(tmp_path / "p.npy")
    elif fmt == "pt":
        torch.save(torch.from_numpy(x), tmp_path / "p.pt")
        source = str(tmp_path / "p.pt")
    elif fmt == "pt-list":
        torch.save(list(torch.from_numpy(x)), tmp_path / "p.pt")
        source = str(tmp_path / "p.pt")
    elif fmt == "parquet-list":
        pq.write_table(
            pa.table({"x": pa.array(list(x), pa.list_(pa.float64()))}), tmp_path / "p.parquet"
        )
        source = str(tmp_path / "p.parquet")
    elif fmt == "parquet-cols":
        (tmp_path / "d").mkdir()
        for k, (lo, hi) in enumerate([(0, 5), (5, 12)]):
            cols = {f"f{j}": x[lo:hi, j] for j in range(4)}
            pq.write_table(pa.table(cols), tmp_path / "d" / f"{k}.parquet", row_group_size=2)
        source = str(tmp_path / "d")
    else:
        for k, (lo, hi) in enumerate([(0, 7), (7, 12)]):
            pq.write_table(
                pa.table({"x": pa.array(list(x[lo:hi]), pa.list_(pa.float64(), 4))}),
                tmp_path / f"shard-{k}.parquet",
            )
        source = str(tmp_path / "shard-*.parquet")
    pool = open_pool(source)
    assert (pool.kind, pool.n_rows, pool.row_shape) == ("tensor", 12, (4,))
    got = torch.cat([torch.as_tensor(pool.read(lo, min(lo + 5, 12))) for lo in range(0, 12, 5)])
    assert torch.equal(got.double(), torch.from_numpy(x))
    assert pool.row_ids(3, 6).tolist() == [3, 4, 5]


def test_text_pool_ids_are_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("a good film\n\n  \nawful\nfine\n", encoding="utf-8")
    pool = open_pool(tmp_path / "t.txt")
    assert pool.kind == "text" and pool.read(0, 3) == ["a good film", "awful", "fine"]
    assert pool.row_ids(0, 3).tolist() == [0, 3, 4]


def test_resume_after_an_interrupted_run(tmp_path: Path) -> None:
    x = pool_x()
    counting = models.Interrupting(after=-1)
    score_pool(counting, x, samples=5, seed=0, block_rows=8, batch_size=8)
    model = models.Interrupting(after=counting.calls // 2)  # a Ctrl-C half way through
    out = tmp_path / "s.parquet"
    with pytest.raises(KeyboardInterrupt):
        score_pool(model, x, out=out, samples=5, seed=0, block_rows=8, batch_size=8)
    first = finished_blocks(out)
    assert 0 < len(first) < 7  # some blocks finished, not all
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written part
    run = score_pool(model, x, out=out, samples=5, seed=0, block_rows=8, batch_size=8)
    assert run.blocks_skipped == len(first) and run.blocks_scored == 7 - len(first)
    ref = mc_predict(model.net, torch.from_numpy(x), samples=5, seed=0)
    check_same(run.read(), ref, np.arange(53))
    # a third run skips everything
    again = score_pool(model, x, out=out, samples=5, seed=0, block_rows=8)
    assert (again.blocks_scored, again.blocks_skipped) == (0, 7)


@pytest.mark.parametrize("acquire", ["bald", "entropy", "margin", "variation_ratio"])
def test_top_k_merge_equals_full_sort(tmp_path: Path, acquire: str) -> None:
    x = pool_x(97)
    net = models.mlp()
    run = score_pool(net, x, out=tmp_path / "s", samples=4, seed=0, block_rows=10,
                     acquire=acquire, top_k=15)  # fmt: skip
    table = run.read()
    ids = np.asarray(table.column("row_id").to_numpy())
    if acquire == "margin":
        p = np.sort(probs_of(table), axis=1)
        score = 1.0 - (p[:, -1] - p[:, -2])
    else:
        col = {"bald": "mutual_information", "entropy": "predictive_entropy"}.get(acquire, acquire)
        score = np.asarray(table.column(col).to_numpy())
    # the full sort, written out: highest score first, ties to the smaller row id
    full = sorted(zip(-score, ids))[:15]
    assert run.ranked is not None
    assert run.ranked.row_id.tolist() == [int(i) for _, i in full]
    ranked = pq.read_table(tmp_path / "s" / f"_ranked-{acquire}.parquet")
    assert ranked.column("row_id").to_pylist() == run.ranked.row_id.tolist()
    assert ranked.column("rank").to_pylist() == list(range(1, 16))


def test_top_k_ties_go_to_the_smaller_row_id_in_any_merge_order() -> None:
    rng = np.random.default_rng(0)
    ids = rng.permutation(200)
    score = rng.integers(0, 5, 200).astype(float)  # many ties
    want = top_k(ids, score, 30)
    merged = None
    for lo in range(0, 200, 17):
        merged = merge(merged, top_k(ids[lo : lo + 17], score[lo : lo + 17], 30), 30)
    assert merged is not None and merged.row_id.tolist() == want.row_id.tolist()
    assert want.row_id.tolist() == [i for _, i in sorted(zip(-score, ids))][:30]


def test_batch_bald_picks_among_bald_candidates() -> None:
    from dropkit.active.batch_bald import batch_bald

    x = pool_x(60)
    net = models.mlp()
    run = score_pool(net, x, samples=16, seed=0, block_rows=25, acquire="batch_bald",
                     top_k=4, candidates_m=12)  # fmt: skip
    table = run.read()
    mi = np.asarray(table.column("mutual_information").to_numpy())
    cand = top_k(np.arange(60), mi, 12).row_id
    assert run.ranked is not None and set(run.ranked.row_id.tolist()) <= set(cand.tolist())
    # the same greedy choice made by hand on consistent-mask samples of the candidates
    ref = mc_predict(net, torch.from_numpy(x[cand]), samples=16, seed=0,
                     consistent_masks=True, keep_samples=True)  # fmt: skip
    chosen = batch_bald(ref, 4, generator=torch.Generator().manual_seed(0))
    assert run.ranked.row_id.tolist() == cand[chosen.indices.numpy()].tolist()


# -- bad input: one-line errors, exit 2 ----------------------------------------------------------


def one_line(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if not line.startswith("dropkit: note: ")]  # --p says what it set
    assert code == 2 and len(err) == 1 and err[0].startswith("dropkit: error: "), err
    assert re.search(match, err[0]), err[0]


FACTORY = "_score_models:mlp"


def test_cli_writes_scores_and_ranked_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = pool_x(30)
    np.save(tmp_path / "p.npy", x)
    out = tmp_path / "s.parquet"
    argv = [
        "score", FACTORY, "--input", str(tmp_path / "p.npy"), "--out", str(out),
        "--samples", "5", "--seed", "2", "--block-rows", "8", "--acquire", "bald", "--top-k", "3",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "30 rows, 4 blocks: 4 scored" in printed and "_ranked-bald.parquet" in printed
    table = pq.read_table(out)  # the folder reads as one table (underscore files skipped)
    ref = mc_predict(models.mlp(), torch.from_numpy(x), samples=5, seed=2)
    check_same(table, ref, np.arange(30))
    manifest = json.loads((out / MANIFEST).read_text())
    assert (manifest["samples"], manifest["seed"], manifest["block_rows"]) == (5, 2, 8)
    assert main(argv) == 0 and "0 scored, 4 already done" in capsys.readouterr().out


def test_cli_refuses_another_runs_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "p.npy", pool_x(10))
    base = ["score", FACTORY, "--input", str(tmp_path / "p.npy"), "--out", str(tmp_path / "s")]
    assert main([*base, "--samples", "3"]) == 0
    capsys.readouterr()
    one_line(capsys, [*base, "--samples", "4"], r"another run's blocks: samples \(3 != 4\)")
    one_line(capsys, [*base, "--samples", "3", "--seed", "1"], r"seed \(0 != 1\)")
    one_line(capsys, [*base, "--samples", "3", "--p", "0.5"], r"model \(another model")


def test_bad_inputs_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def argv(pool: object, *extra: str) -> list[str]:
        return ["score", FACTORY, "--input", str(pool), "--out", str(tmp_path / "o"), *extra]

    one_line(capsys, argv(tmp_path / "missing.npy"), r"expected an existing pool file.*missing")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    one_line(capsys, argv(tmp_path / "junk.npy"), r"expected a numpy array saved with numpy.save")
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), tmp_path / "mixed.parquet")
    one_line(
        capsys, argv(tmp_path / "mixed.parquet"), r"column 'name' of type string \(not numeric\)"
    )
    pq.write_table(
        pa.table({"x": pa.array([[1.0, 2.0], [1.0, 2.0, 3.0]], pa.list_(pa.float64()))}),
        tmp_path / "ragged.parquet",
    )
    one_line(capsys, argv(tmp_path / "ragged.parquet"), r"rows of one shape.*3 values at row 1")
    torch.save([torch.zeros(4), torch.zeros(5)], tmp_path / "ragged.pt")
    one_line(capsys, argv(tmp_path / "ragged.pt"), r"mixed shapes \(4,\) and \(5,\)")
    np.save(tmp_path / "p.npy", pool_x(6))
    one_line(capsys, argv(tmp_path / "p.npy", "--acquire", "bald", "--top-k", "7"),
             r"expected top_k <= the pool's 6 rows, but got 7")  # fmt: skip
    one_line(capsys, argv(tmp_path / "p.npy", "--engine", "ray", "--address", "127.0.0.1:1"),
             r"expected a reachable Ray cluster at --address, but got '127.0.0.1:1'")  # fmt: skip
    one_line(capsys, argv(tmp_path / "p.npy", "--top-k", "2"), r"--acquire and --top-k together")
    (tmp_path / "file-out").write_text("x")
    to_file = [
        "score",
        FACTORY,
        "--input",
        str(tmp_path / "p.npy"),
        "--out",
        str(tmp_path / "file-out"),
    ]
    one_line(capsys, to_file, r"expected the output to be a folder")
    assert not (tmp_path / "o").exists()  # nothing was written by any refused run


def test_library_errors_name_the_fix(tmp_path: Path) -> None:
    net = models.mlp()
    (tmp_path / "texts.txt").write_text("a text\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"expected engine one of 'local', 'ray', but got 'spark'"):
        score_pool(net, pool_x(4), engine="spark")
    with pytest.raises(TypeError, match=r"expected an nn.Module or a factory returning one"):
        score_pool(lambda: 3, pool_x(4))
    with pytest.raises(TypeError, match=r"expected a pool path"):
        score_pool(net, 3.5)
    with pytest.raises(ValueError, match=r"expected a classification model for acquire='bald'"):
        score_pool(models.regressor(), pool_x(4), output="regression", acquire="bald", top_k=1)
    with pytest.raises(ValueError, match=r"expected a tokenizer for the text pool"):
        score_pool(net, tmp_path / "texts.txt")
    with pytest.raises(ValueError, match=r"expected samples >= 1"):
        score_pool(net, pool_x(4), samples=0)


def test_progress_only_when_asked_or_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    net = models.mlp()
    score_pool(net, pool_x(9), samples=2, block_rows=4, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"dropkit score: 9/9 rows \([\d,]+ rows/s\)", err), err
    score_pool(net, pool_x(9), samples=2, block_rows=4)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""

"""Text pools for a Hugging Face classifier: .txt lines and a Parquet text column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pa = pytest.importorskip("pyarrow", reason="dropkit score writes Parquet: needs the 'ray' extra")
transformers = pytest.importorskip("transformers", reason="needs the 'hf' extra")
import pyarrow.parquet as pq  # noqa: E402

from dropkit import mc_predict  # noqa: E402
from dropkit.cli import main  # noqa: E402
from dropkit.score import score_pool  # noqa: E402

TEXTS = ["a good film", "", "awful plot and cast", "fine", "long and dull", "great", "odd"]
# float32 BERT: blocks pad to their own longest text, so attention and layer norms
# sum over other lengths; 2e-5 is ~170 eps(float32), well above that rounding
# through two small layers and well below a changed head mask (> 1e-3 here).
TOL = 2e-5


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bert")
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=3, classifier_dropout=0.5,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


def test_txt_pool_via_cli_equals_mc_predict(tiny_bert: Path, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "s.parquet"
    argv = ["score", str(tiny_bert), "--input", str(tmp_path / "t.txt"), "--out", str(out)]
    argv += ["--samples", "8", "--sites", "head", "--block-rows", "2", "--batch-size", "2"]
    assert main(argv) == 0
    table = pq.read_table(out)
    ids = [i for i, t in enumerate(TEXTS) if t]
    assert table.column("row_id").to_pylist() == ids  # line numbers, blank line skipped
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    enc = dict(tok([TEXTS[i] for i in ids], padding=True, return_tensors="pt"))
    ref = mc_predict(model, enc, samples=8, sites="head", seed=0, row_ids=torch.tensor(ids))
    probs = np.asarray(table.column("probs").combine_chunks().flatten()).reshape(len(ids), -1)
    np.testing.assert_allclose(probs, ref.mean.numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(
        table.column("mutual_information").to_numpy(), ref.mutual_information, rtol=0, atol=TOL
    )


def test_parquet_text_column_equals_txt(tiny_bert: Path, tmp_path: Path) -> None:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    kept = [t for t in TEXTS if t]
    pq.write_table(pa.table({"text": kept}), tmp_path / "t.parquet")
    a = score_pool(model, tmp_path / "t.parquet", samples=5, sites="head", tokenizer=tok,
                   block_rows=3).read()  # fmt: skip
    b = score_pool(model, _write(tmp_path, kept), samples=5,
                   sites="head", tokenizer=tok, block_rows=4).read()  # fmt: skip
    assert a.column("row_id").to_pylist() == b.column("row_id").to_pylist() == list(range(6))
    np.testing.assert_allclose(
        a.column("predictive_entropy").to_numpy(), b.column("predictive_entropy").to_numpy(),
        rtol=0, atol=TOL,
    )  # fmt: skip


def _write(folder: Path, texts: list[str]) -> Path:
    path = folder / "k.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path

"""mc_predict on raw texts with a Hugging Face tokenizer (real MiniLM weights), devices, labels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropkit.uncertainty import mc_predict
from dropkit.uncertainty._inputs import label_names, to_device

transformers = pytest.importorskip("transformers")

TEXTS = ["a great movie", "dull and far too long", "fine", "I would watch it again", "meh"]


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        minilm_dir, num_labels=2, id2label={0: "negative", 1: "positive"}
    ).eval()
    return tok, model


def test_texts_equal_the_same_batches_tokenized_by_hand(minilm, seed: int) -> None:
    tok, model = minilm
    got = mc_predict(model, TEXTS, tokenizer=tok, batch_size=2, samples=4, seed=seed, sites="head")
    # by hand: the same pieces, each padded to its own longest text
    pieces = [
        tok(TEXTS[i : i + 2], padding=True, truncation=True, return_tensors="pt")
        for i in range(0, len(TEXTS), 2)
    ]
    ref = mc_predict(model, pieces, samples=4, seed=seed, sites="head")
    # same batches, same seeded masks, same ops on the same shapes: identical
    assert torch.equal(got.mean, ref.mean)
    assert torch.equal(got.mutual_information, ref.mutual_information)
    assert got.mean.shape == (5, 2)


def test_predictions_and_label_names(minilm, seed: int) -> None:
    tok, model = minilm
    r = mc_predict(model, TEXTS, tokenizer=tok, samples=3, seed=seed, sites="head")
    assert r.labels == ["negative", "positive"]
    assert torch.equal(r.predictions, r.mean.argmax(-1))
    assert r.predicted_labels == [r.labels[i] for i in r.predictions.tolist()]
    one = mc_predict(model, "a single text", tokenizer=tok, samples=3, seed=seed, sites="head")
    assert one.mean.shape == (1, 2)


def test_long_texts_are_truncated_to_the_model_length(minilm, seed: int) -> None:
    tok, model = minilm
    long = "word " * 2000  # far beyond MiniLM's 512 positions
    r = mc_predict(model, [long, "short"], tokenizer=tok, samples=2, seed=seed, sites="head")
    assert r.mean.shape == (2, 2) and bool(torch.isfinite(r.mean).all())


def test_text_input_errors(minilm) -> None:
    tok, model = minilm
    with pytest.raises(TypeError, match=r"mc_predict: expected .* \(texts only with tokenizer="):
        mc_predict(model, TEXTS, samples=2)
    with pytest.raises(TypeError, match=r"expected a text or a non-empty list of texts with tok"):
        mc_predict(model, torch.zeros(2, 3, dtype=torch.long), tokenizer=tok, samples=2)
    with pytest.raises(TypeError, match=r"expected a text or a non-empty list of texts"):
        mc_predict(model, [], tokenizer=tok, samples=2)
    with pytest.raises(TypeError, match=r"expected tokenizer to be a Hugging Face tokenizer"):
        mc_predict(model, TEXTS, tokenizer="bert-base-uncased", samples=2)


def test_batches_follow_the_model_device() -> None:
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "flag": True}
    assert to_device(batch, torch.device("cpu")) is batch  # nothing to move
    moved = to_device(batch, torch.device("meta"))
    assert moved["input_ids"].device.type == "meta" and moved["flag"] is True
    x = torch.ones(2)
    assert to_device(x, torch.device("meta")).device.type == "meta"


def test_label_names_only_when_they_fit() -> None:
    class Config:
        id2label = {0: "a", 1: "b"}

    model = nn.Linear(2, 2)
    assert label_names(model, 2) is None
    model.config = Config()  # type: ignore[assignment]
    assert label_names(model, 2) == ["a", "b"] and label_names(model, 3) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_takes_cpu_texts(minilm, seed: int) -> None:
    tok, model = minilm
    cpu = mc_predict(model, TEXTS, tokenizer=tok, samples=4, seed=seed, sites="head")
    gpu = mc_predict(model.cuda(), TEXTS, tokenizer=tok, samples=4, seed=seed, sites="head")
    model.cpu()
    assert gpu.mean.shape == cpu.mean.shape
    # other masks (CUDA generators) and float32 on another device: only the shape and
    # normalisation compare; the rows are probabilities
    torch.testing.assert_close(gpu.mean.sum(-1).cpu(), torch.ones(5, dtype=gpu.mean.dtype))

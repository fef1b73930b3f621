"""Resolve a command-line ``MODEL`` argument into a live ``nn.Module``.

``MODEL`` is, in this order of precedence:

1. a local Hugging Face folder (a directory with ``config.json``), loaded
   offline with ``transformers`` (``AutoModel`` or, for ``predict`` and for
   folders whose config names a ``*ForSequenceClassification`` architecture,
   ``AutoModelForSequenceClassification``);
2. ``package.module:factory``: ``factory()`` is called with no arguments and
   must return an ``nn.Module``;
3. a timm model name, built with ``timm.create_model(name, pretrained=False)``
   (random weights; nothing is downloaded).

Anything that looks like a path (contains a path separator or starts with
``.`` or ``~``) but does not exist is reported as a missing path, not as an
unknown model name.

Why here and not in ``dropkit.integrations``: the loader parses the shell's
``MODEL`` string (path, ``module:factory`` or timm name) for ``audit``,
``predict`` and ``score``, and only those commands use it; the framework
calls it makes (``transformers.AutoModel*``, ``timm.create_model``) are
imported lazily inside it, like every optional dependency.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from dropkit._optional import require


@dataclass
class LoadedModel:
    """A model resolved from the command line.

    Attributes:
        model: The module, in eval mode unless its source built it otherwise.
        source: ``"huggingface"``, ``"factory"`` or ``"timm"``.
        name: The ``MODEL`` argument as given.
        folder: The Hugging Face folder (for the tokenizer), else None.
        notes: Facts worth telling the user (e.g. a freshly initialised head).
    """

    model: nn.Module
    source: str
    name: str
    folder: Path | None = None
    notes: list[str] = field(default_factory=list)


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.startswith((".", "~"))


def load_model(spec: str, *, caller: str = "dropkit", classifier: bool = False) -> LoadedModel:
    """Build the model named by ``spec`` (see the module docstring).

    Args:
        spec: The ``MODEL`` argument.
        caller: Command name used in error messages.
        classifier: Load Hugging Face folders with
            ``AutoModelForSequenceClassification`` (a head is initialised at
            random, and reported in ``notes``, when the folder has none).

    Returns:
        The :class:`LoadedModel`.

    Raises:
        FileNotFoundError: For a missing path or a folder without config.json.
        ValueError: For an unknown model type or timm name, or a bad factory.
        ImportError: When the optional dependency a source needs is missing.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_hf(path, spec, caller, classifier)
    if path.exists():
        raise FileNotFoundError(
            f"{caller}: expected a model folder (with config.json), but got the file {spec!r}. "
            "Pass the folder written by save_pretrained."
        )
    if ":" in spec and not _looks_like_path(spec.split(":", 1)[0]):
        return _load_factory(spec, caller)
    if _looks_like_path(spec):
        raise FileNotFoundError(
            f"{caller}: expected an existing model folder, but got {spec!r}, which does not "
            "exist. Check the path, or pass a timm model name or package.module:factory."
        )
    return _load_timm(spec, caller)


def _load_hf(folder: Path, spec: str, caller: str, classifier: bool) -> LoadedModel:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{caller}: expected a Hugging Face folder with config.json, but got {spec!r} "
            "(no config.json inside). Pass the folder written by save_pretrained."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{caller}: expected valid JSON in {str(config_file)!r}, but got {str(exc)!r}. "
            "Re-save the model with save_pretrained."
        ) from exc
    transformers = require("transformers", "hf", caller)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    architectures = (config.get("architectures") or []) if isinstance(config, dict) else []
    known = _known_model_types(transformers)
    if not isinstance(model_type, str) or (known and model_type not in known):
        raise ValueError(
            f"{caller}: expected a config.json whose model_type transformers knows, but got "
            f"{model_type!r} in {spec!r}. Check the folder, or upgrade transformers."
        )
    want_classifier = classifier or any("ForSequenceClassification" in a for a in architectures)
    auto = (
        transformers.AutoModelForSequenceClassification
        if want_classifier
        else transformers.AutoModel
    )
    hf_logger = logging.getLogger("transformers")
    level = hf_logger.level
    hf_logger.setLevel(logging.ERROR)  # loading chatter; what matters goes in notes
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()
    try:
        model, info = auto.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True
        )
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(
            f"{caller}: expected a loadable Hugging Face folder, but got {spec!r} "
            f"({type(exc).__name__}: {exc}). Re-save it with save_pretrained."
        ) from exc
    finally:
        hf_logger.setLevel(level)
    notes = []
    missing = [k for k in info.get("missing_keys", []) if k]
    if missing and want_classifier:
        notes.append(
            f"{len(missing)} weight tensors were missing from {spec!r} and were initialised at "
            f"random (e.g. {sorted(missing)[0]}): predictions are untrained until you fine-tune."
        )
    model.eval()
    return LoadedModel(model=model, source="huggingface", name=spec, folder=folder, notes=notes)


def _known_model_types(transformers: Any) -> set[str]:
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:  # layout changed: let from_pretrained decide
        return set()
    return set(CONFIG_MAPPING_NAMES)


def _load_factory(spec: str, caller: str) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"{caller}: expected an importable module in {spec!r}, but importing "
            f"{module_name!r} failed ({exc}). Check the name and that it is on PYTHONPATH."
        ) from exc
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise ValueError(
            f"{caller}: expected {module_name}.{attr} to be a callable returning an nn.Module, "
            f"but got {type(factory).__name__}. Name a function or class in that module."
        )
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"{caller}: expected {spec} to return a torch.nn.Module, but got "
            f"{type(model).__name__}. Return the model itself."
        )
    return LoadedModel(model=model, source="factory", name=spec)


def _close_names(name: str, known: list[str], n: int = 3) -> list[str]:
    # Compare with each name's prefix of the same length: "vit_tiy" ~ "vit_tiny_...".
    def score(candidate: str) -> float:
        return difflib.SequenceMatcher(None, name, candidate[: len(name) + 1]).ratio()

    ranked = sorted(known, key=lambda c: (-score(c), len(c)))
    return [c for c in ranked[:n] if score(c) >= 0.6]


def _load_timm(name: str, caller: str) -> LoadedModel:
    try:
        timm = importlib.import_module("timm")
    except ImportError:
        timm = None
    if timm is None or not timm.is_model(name):
        close = _close_names(name, timm.list_models()) if timm else []
        hint = f" Close timm names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"{caller}: expected a Hugging Face folder, a timm model name or "
            f"package.module:factory, but got {name!r}, which is none of them.{hint}"
        )
    model = timm.create_model(name, pretrained=False)
    model.eval()
    return LoadedModel(model=model, source="timm", name=name)

"""Which dropout sites belong to a model's classifier head (``sites="head"``).

Two conventions, both read without importing a framework:

* a Hugging Face task model (``*ForSequenceClassification``, ...) keeps its base
  model under ``model.base_model_prefix``; every other top-level child is the head
  (BERT's ``dropout`` + ``classifier``, RoBERTa's ``classifier`` with its
  ``dropout``, DistilBERT's ``pre_classifier`` / ``dropout`` / ``classifier``);
* otherwise (timm, plain PyTorch) the head is a top-level child named ``head``,
  ``head_drop``, ``fc``, ``classifier``, ``pre_classifier``, ``score`` or
  ``dropout``, or a root ``drop_rate`` attribute that timm's ``forward_head``
  passes to ``F.dropout``.

No paper here: naming conventions.
"""

from __future__ import annotations

from torch import nn

from dropkit.sites.hf_config import is_pretrained
from dropkit.sites.record import DropoutSite

#: Top-level child names that hold a timm (or plain PyTorch) classifier head.
HEAD_NAMES: frozenset[str] = frozenset(
    {"head", "head_drop", "fc", "classifier", "pre_classifier", "score", "drop_rate", "dropout"}
)


def head_paths(model: nn.Module) -> list[str] | None:
    """Path prefixes of the classifier head of an HF task model, else None.

    The head is everything outside the base model (``model.base_model_prefix``).
    """
    if not is_pretrained(model):
        return None
    base = getattr(model, "base_model_prefix", "")
    children = [name for name, _ in model.named_children()]
    if not base or base not in children:
        return None
    return [name for name in children if name != base]


def is_head_path(path: str) -> bool:
    """Whether a site path (or name) belongs to a timm-style classifier head."""
    return path.split(".", 1)[0] in HEAD_NAMES


def is_head(model: nn.Module, site: DropoutSite, heads: list[str] | None = None) -> bool:
    """Whether ``site`` belongs to the classifier head of ``model``.

    Args:
        model: The model the site belongs to.
        site: A site of ``model``.
        heads: ``head_paths(model)`` when already computed.
    """
    if heads is None:
        heads = head_paths(model)
    if heads is None:
        return is_head_path(site.name)
    return any(site.path == h or site.path.startswith(h + ".") for h in heads)

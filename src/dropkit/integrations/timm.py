"""timm integration: the timm conventions that ``find_dropout`` and ``mc_mode`` rely on.

timm keeps stochastic regularisation in four places, all handled without importing
timm (plain duck typing, so the check costs nothing when timm is absent):

* ``DropPath`` (stochastic depth, Huang et al., 2016) and ``DropBlock2d``
  (Ghiasi et al., 2018) store their rate as ``drop_prob``; Hugging Face's copies
  (``ConvNextDropPath``, ``SwinDropPath``, ...) follow the same convention;
* blocks hold ``attn_drop`` / ``proj_drop`` ``nn.Dropout`` modules, and the fused
  attention reads ``self.attn_drop.p if self.training`` (found by source reading);
* classifier heads (``head_drop`` modules, or a ``drop_rate`` float attribute on
  the model that ``forward_head`` passes to ``F.dropout``).

References:
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    Ghiasi et al., "DropBlock: A regularization method for convolutional
    networks", NeurIPS 2018.
"""

from __future__ import annotations

import numbers

from torch import nn

#: Top-level child names that hold a timm (or plain PyTorch) classifier head.
HEAD_NAMES: frozenset[str] = frozenset(
    {"head", "head_drop", "fc", "classifier", "pre_classifier", "score", "drop_rate", "dropout"}
)


def timm_module_rate(module: nn.Module) -> tuple[str, str] | None:
    """Return ``(kind, "drop_prob")`` for DropPath / DropBlock style modules.

    Args:
        module: Any module.

    Returns:
        ``("path", "drop_prob")`` for a class whose name contains ``DropPath``,
        ``("block", "drop_prob")`` for one containing ``DropBlock``, else None.
    """
    value = getattr(module, "drop_prob", None)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    name = type(module).__name__
    if "DropPath" in name:
        return "path", "drop_prob"
    if "DropBlock" in name:
        return "block", "drop_prob"
    return None


def is_head_path(path: str) -> bool:
    """Whether a site path belongs to a timm-style classifier head."""
    return path.split(".", 1)[0] in HEAD_NAMES

"""Base class and small helpers shared by dropkit's dropout modules.

The base class follows PyTorch's ``_DropoutNd`` idea: one place validates the
drop probability, at construction and on every later assignment.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from dropkit._validation import _fail, check_generator, check_p


class DropoutBase(nn.Module):
    """A dropout module with a validated ``p``, ``inplace`` and an optional generator.

    Subclasses set :attr:`kind` (the site kind reported by ``find_dropout``) and
    :attr:`allow_one`, and implement ``forward``. Assigning ``module.p`` or
    ``module.generator`` later is validated too, so a bad value can never
    reach a forward pass; a rejected assignment leaves the old value in place.
    The generator is a plain attribute, so the ``state_dict`` stays empty, like
    ``torch.nn.Dropout``'s.

    Args:
        p: Drop probability.
        inplace: Modify the input in place where the variant allows it.
        generator: Optional ``torch.Generator`` for reproducible masks; the
            global generator is used when ``None``.
    """

    kind: ClassVar[str] = "element"
    #: Whether ``p == 1`` is a valid rate for this variant.
    allow_one: ClassVar[bool] = False

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.p = p
        self.inplace = inplace
        self.generator = generator

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "p":
            value = check_p(type(self).__name__, value, allow_one=self.allow_one)
        elif name == "generator":
            value = check_generator(type(self).__name__, value)
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        return f"p={self.p}, inplace={self.inplace}"


def check_tensor(where: str, x: Any, name: str = "input") -> torch.Tensor:
    """Raise TypeError unless ``x`` is a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise _fail(
            TypeError,
            where,
            f"{name} to be a torch.Tensor",
            type(x).__name__,
            "Pass a tensor (unpack PackedSequence or model outputs first).",
        )
    if not (x.is_floating_point() or x.is_complex()):
        raise _fail(
            TypeError,
            where,
            f"{name} to be a floating-point tensor",
            x.dtype,
            "Convert it with .float() first.",
        )
    return x

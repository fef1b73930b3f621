"""Base class shared by dropkit's dropout modules."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from dropkit._validation import check_generator, check_p


class DropoutBase(nn.Module):
    """A dropout module with a validated ``p``, ``inplace`` and an optional generator.

    Subclasses set :attr:`kind` (the site kind reported by ``find_dropout``) and
    implement ``forward``. Assigning ``module.p`` later is validated too, so a
    bad rate can never reach a forward pass.

    Args:
        p: Drop probability.
        inplace: Modify the input in place where the variant allows it.
        generator: Optional ``torch.Generator`` for reproducible masks.
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
        self.generator = check_generator(type(self).__name__, generator)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "p":
            value = check_p(type(self).__name__, value, allow_one=self.allow_one)
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"

"""Base class and small helpers shared by dropkit's dropout modules.

The base class follows PyTorch's ``_DropoutNd`` idea: one place validates the
drop probability, at construction and on every later assignment. The drop-in
replacements of ``torch.nn``'s layers also subclass the torch class they
replace, and raise errors that the ``except`` clauses written for torch's
layers still catch (:class:`DropoutShapeError`, :class:`DropoutDTypeError`,
:class:`DropoutComplexError`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from dropkit._validation import _fail, check_bool, check_generator, check_p


class DropoutShapeError(ValueError, RuntimeError):
    """A tensor of the wrong rank: a ``ValueError`` that is also a ``RuntimeError``.

    ``torch.nn``'s dropout layers raise ``RuntimeError`` for a wrong rank, the
    house style ``ValueError``; this class is both, so either ``except`` works.
    """


class DropoutDTypeError(TypeError, RuntimeError):
    """A tensor dtype that cannot be dropped: ``TypeError`` and ``RuntimeError``.

    ``torch.nn``'s layers raise ``RuntimeError`` for integer or bool inputs in
    training mode, the house style ``TypeError``.
    """


class DropoutComplexError(NotImplementedError, TypeError):
    """A complex input in training mode, as torch's ``NotImplementedError``.

    Also a ``TypeError`` (the house error for a wrong dtype); like torch, eval
    mode, ``p == 0`` and ``p == 1`` accept complex inputs.
    """


#: Boolean options of dropkit's modules, validated on every assignment.
_FLAGS = frozenset({"inplace", "scale_by_keep", "batch_first", "same_on_all_ranks"})


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
        elif name in _FLAGS:
            value = check_bool(type(self).__name__, value, name)  # "no" would mean on
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        return f"p={self.p}, inplace={self.inplace}"


def check_rank(caller: str, x: torch.Tensor, ranks: tuple[int, ...], layout: str) -> None:
    """Raise :class:`DropoutShapeError` unless ``x.dim()`` is one of ``ranks``."""
    if x.dim() not in ranks:
        names = " or ".join(f"{r}-D" for r in ranks)
        raise _fail(
            DropoutShapeError,
            caller,
            f"a {names} input {layout}",
            tuple(x.shape),
            "Reshape the input or pick the variant for this rank.",
        )


def check_droppable(caller: str, x: torch.Tensor) -> None:
    """Raise unless ``x`` has a real floating dtype (called only when dropping).

    ``torch.nn``'s layers return any tensor unchanged in eval mode or at
    ``p == 0``, and fail only when they draw a mask: integer and bool inputs
    with ``RuntimeError``, complex ones with ``NotImplementedError``. These
    errors are catchable as both torch's type and the house ``TypeError``.
    """
    if x.is_floating_point():
        return
    if x.is_complex():
        raise _fail(
            DropoutComplexError,
            caller,
            "a real floating-point input in training mode",
            x.dtype,
            "Pass a real tensor, e.g. torch.view_as_real(x) (drops the real and "
            "imaginary parts independently).",
        )
    raise _fail(
        DropoutDTypeError,
        caller,
        "a floating-point input in training mode",
        x.dtype,
        "Convert it with .float() first.",
    )


def drop_all(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``p == 1``: multiply by a zero of ``x``'s own dtype, as torch does.

    ``x * 0`` keeps NaN and infinity propagation, the dtype (also for integer
    inputs) and the memory layout of ``x``.
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return x.mul_(zero) if inplace else x * zero


def check_is_tensor(caller: str, x: Any, name: str = "input") -> torch.Tensor:
    """Raise TypeError unless ``x`` is a tensor (of any dtype; see :func:`check_droppable`)."""
    if not isinstance(x, torch.Tensor):
        raise _fail(
            TypeError,
            caller,
            f"{name} to be a torch.Tensor",
            type(x).__name__,
            "Pass a tensor (unpack PackedSequence or model outputs first).",
        )
    return x


def check_tensor(caller: str, x: Any, name: str = "input") -> torch.Tensor:
    """Raise TypeError unless ``x`` is a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise _fail(
            TypeError,
            caller,
            f"{name} to be a torch.Tensor",
            type(x).__name__,
            "Pass a tensor (unpack PackedSequence or model outputs first).",
        )
    if not (x.is_floating_point() or x.is_complex()):
        raise _fail(
            TypeError,
            caller,
            f"{name} to be a floating-point tensor",
            x.dtype,
            "Convert it with .float() first.",
        )
    return x

"""A dropout-regularised classification head for pretrained backbones.

The fine-tuning recipe: pool the backbone's token states (the ``[CLS]`` token
or an attention-mask-aware mean), then ``dropout -> linear -> activation ->
dropout -> linear``. A freshly initialised head benefits from more dropout
(0.1-0.3) than the pretrained body it sits on.

References:
    Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for
    Language Understanding", NAACL 2019 (the ``[CLS]`` pooling and head).
    Reimers & Gurevych, "Sentence-BERT", EMNLP 2019 (masked mean pooling).
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 2014.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import torch
from torch import nn

from dropkit._validation import _fail, check_choice, check_int, check_p

#: Token states ``(N, L, H)``: a tensor, a Hugging Face ``ModelOutput`` (or a
#: dict) with ``last_hidden_state``, or a tuple whose first element is them.
HiddenStates: TypeAlias = torch.Tensor | Mapping[str, torch.Tensor] | tuple[torch.Tensor, ...]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
_POOLING = ("cls", "mean")


def _hidden_states(caller: str, features: object) -> torch.Tensor:
    # Accept a bare tensor, a Hugging Face ModelOutput, a dict or a tuple
    # whose first element is the last hidden state.
    if isinstance(features, torch.Tensor):
        return features
    state = getattr(features, "last_hidden_state", None)
    if state is None and isinstance(features, dict):
        state = features.get("last_hidden_state")
    if state is None and isinstance(features, (tuple, list)) and features:
        state = features[0]
    if not isinstance(state, torch.Tensor):
        raise _fail(
            TypeError,
            caller,
            "a tensor or a model output with last_hidden_state",
            type(features).__name__,
            "Pass outputs.last_hidden_state or the backbone's output object.",
        )
    return state


class ClassifierHead(nn.Module):
    """Pooling, then ``dropout -> linear -> activation -> dropout -> linear``.

    With ``pooling="cls"`` the first token's state is used; with
    ``pooling="mean"`` token states are averaged over the positions where
    ``attention_mask`` is 1 (padding excluded); with ``pooling=None`` the
    input is already pooled and the head acts on its last dimension. Both
    dropout layers are ``torch.nn.Dropout`` modules, so
    ``dropkit.find_dropout`` and ``dropkit.set_dropout`` see and steer them.

    Args:
        in_features: Size of the backbone's hidden states ``H``.
        num_classes: Number of output classes ``C``.
        hidden: Width of the intermediate layer; ``in_features`` if ``None``.
        p: Drop probability of both dropout layers.
        activation: One of ``"gelu"``, ``"relu"``, ``"silu"``, ``"tanh"``.
        pooling: ``"cls"``, ``"mean"`` or ``None`` (input already pooled).

    Shape:
        - Input: ``(N, L, H)`` token states (or a model output holding them)
          with an optional ``(N, L)`` attention mask; ``(..., H)`` when
          ``pooling`` is ``None``.
        - Output: ``(N, C)`` logits (``(..., C)`` when ``pooling`` is ``None``).

    Raises:
        ValueError: For a bad ``p``, size, activation or pooling name.

    Example:
        >>> head = ClassifierHead(8, 3, hidden=4, p=0.2, pooling="mean")
        >>> head(torch.randn(2, 5, 8), torch.ones(2, 5)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: int | None = None,
        p: float = 0.1,
        activation: str = "gelu",
        pooling: str | None = "cls",
    ) -> None:
        super().__init__()
        caller = "ClassifierHead"
        in_features = check_int(caller, in_features, "in_features")
        num_classes = check_int(caller, num_classes, "num_classes")
        hidden = in_features if hidden is None else check_int(caller, hidden, "hidden")
        p = check_p(caller, p)
        act = check_choice(caller, activation, "activation", _ACTIVATIONS)
        self.pooling = (
            None if pooling is None else check_choice(caller, pooling, "pooling", _POOLING)
        )
        self.in_features = in_features
        self.num_classes = num_classes
        self.dropout1 = nn.Dropout(p)
        self.dense = nn.Linear(in_features, hidden)
        self.activation = _ACTIVATIONS[act]()
        self.dropout2 = nn.Dropout(p)
        self.out = nn.Linear(hidden, num_classes)

    def pool(
        self, features: HiddenStates, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reduce token states to one vector per example.

        Args:
            features: ``(N, L, H)`` states or a model output holding them.
            attention_mask: Optional ``(N, L)`` mask, 1 for real tokens.

        Shape:
            - Input: ``(N, L, H)``, mask ``(N, L)``.
            - Output: ``(N, H)``.

        Returns:
            The pooled features (the input itself when ``pooling`` is ``None``).

        Raises:
            ValueError: If shapes disagree or a row of the mask is all zeros.
        """
        caller = "ClassifierHead"
        states = _hidden_states(caller, features)
        if states.shape[-1] != self.in_features:
            raise _fail(
                ValueError,
                caller,
                f"inputs whose last dimension is in_features={self.in_features}",
                tuple(states.shape),
                "Build the head with in_features equal to the backbone's hidden size.",
            )
        if self.pooling is None:
            return states
        if states.dim() != 3:
            raise _fail(
                ValueError,
                caller,
                f"a 3-D input (N, L, H) for pooling={self.pooling!r}",
                tuple(states.shape),
                "Pass the backbone's last_hidden_state, or use pooling=None.",
            )
        if self.pooling == "cls":
            return states[:, 0]  # (N, H)
        if attention_mask is None:
            return states.mean(dim=1)
        if attention_mask.shape != states.shape[:2]:
            raise _fail(
                ValueError,
                caller,
                f"an attention_mask of shape {tuple(states.shape[:2])}",
                tuple(attention_mask.shape),
                "Pass the tokenizer's attention_mask for the same batch.",
            )
        mask = attention_mask.to(states.dtype).unsqueeze(-1)  # (N, L, 1)
        counts = mask.sum(dim=1)  # (N, 1)
        if bool((counts == 0).any()):
            raise _fail(
                ValueError,
                caller,
                "at least one unmasked token per example",
                attention_mask.sum(dim=1).tolist(),
                "Check the attention_mask; every row needs a 1.",
            )
        return (states * mask).sum(dim=1) / counts  # (N, H)

    def forward(
        self, features: HiddenStates, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pool the features and return class logits (see the class docstring)."""
        x = self.pool(features, attention_mask)
        x = self.activation(self.dense(self.dropout1(x)))
        return self.out(self.dropout2(x))

    def extra_repr(self) -> str:
        """Show the pooling mode next to the child modules."""
        return f"pooling={self.pooling!r}"

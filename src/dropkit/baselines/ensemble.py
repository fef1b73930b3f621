"""Deep ensembles (Lakshminarayanan et al., 2017): M independently trained members.

The predictive is the mean of the members' softmax probabilities, so an ensemble
is an :class:`MCResult` with ``S = M`` samples and the same decomposition
(predictive entropy = expected entropy + mutual information) as MC dropout.
Members run in eval mode (their dropout off); each module's mode is restored.

References:
    Lakshminarayanan, Pritzel, Blundell (2017). Simple and scalable predictive
    uncertainty estimation using deep ensembles. NeurIPS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from dropkit._validation import check_int, check_module
from dropkit.baselines._common import batched_logits, count_parameters
from dropkit.uncertainty.result import MCResult


class DeepEnsemble:
    """An ensemble of trained classifiers that predicts as one ``MCResult``.

    Args:
        members: The trained models (at least one), each returning logits.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> ens = DeepEnsemble([nn.Linear(3, 2), nn.Linear(3, 2)])
        >>> ens.predict(torch.randn(4, 3)).mean.shape
        torch.Size([4, 2])

    References:
        Lakshminarayanan et al. (2017). Simple and scalable predictive
        uncertainty estimation using deep ensembles. NeurIPS.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        if isinstance(members, nn.Module) or not isinstance(members, Sequence) or not members:
            raise ValueError(
                "DeepEnsemble: expected a non-empty sequence of models, but got "
                f"{type(members).__name__ if members else members!r}. "
                "Pass a list of trained models or use DeepEnsemble.from_train_fn."
            )
        self.members = [check_module("DeepEnsemble", m, "members[i]") for m in members]

    @classmethod
    def from_train_fn(
        cls, train_fn: Callable[[int], nn.Module], members: int = 5, *, seed: int = 0
    ) -> DeepEnsemble:
        """Train ``members`` models with ``train_fn(seed + m)``, m = 0..M-1.

        torch's global generator is seeded with ``seed + m`` before each call so
        members differ by initialisation and data order only.

        Args:
            train_fn: Builds and trains one model from a seed; returns it.
            members: Ensemble size ``M``.
            seed: Base seed.

        Returns:
            The trained :class:`DeepEnsemble`.
        """
        m_count = check_int("DeepEnsemble.from_train_fn", members, "members")
        if not callable(train_fn):
            raise TypeError(
                "DeepEnsemble.from_train_fn: expected train_fn to be callable, but got "
                f"{type(train_fn).__name__!r}. Pass a function seed -> trained model."
            )
        models = []
        for m in range(m_count):
            torch.manual_seed(seed + m)
            models.append(train_fn(seed + m))
        return cls(models)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def num_parameters(self) -> int:
        """Total scalar parameters of all members."""
        return sum(count_parameters(m) for m in self.members)

    def predict(
        self,
        inputs: torch.Tensor,
        *,
        batch_size: int | None = None,
        keep_samples: bool = False,
    ) -> MCResult:
        """Average the members' softmax probabilities (float64).

        Args:
            inputs: Input batch ``(N, ...)``.
            batch_size: Chunk size of the forward passes.
            keep_samples: Store the ``(M, N, C)`` member probabilities.

        Shape:
            - inputs: ``(N, ...)``.
            - result.samples: ``(M, N, C)``.

        Returns:
            An :class:`MCResult` with ``S = M``; ``extras`` holds ``method``,
            ``members`` and ``forward_passes`` (per input, ``= M``).
        """
        probs = [
            torch.softmax(
                batched_logits("DeepEnsemble.predict", m, inputs, batch_size).double(), -1
            )
            for m in self.members
        ]
        result = MCResult.from_samples(torch.stack(probs), keep_samples=keep_samples)
        result.extras.update(
            method="ensemble", members=len(self.members), forward_passes=len(self.members)
        )
        return result

"""What both engines of :func:`dropkit.score_pool` share (local in ``api``, Ray in ``distributed``).

Kept apart from ``api`` so that ``distributed`` (imported lazily by ``api``) does
not import ``api`` back.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from torch import nn

from dropkit.score.pool import Pool

WHERE = "score_pool"


class _Progress:
    """``rows/total (rate)`` on one terminal line, only when enabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled, 0
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.last >= 0.5 or self.done >= self.total):
            rate = self.done / max(now - self.start, 1e-9)
            sys.stderr.write(
                f"\rdropkit score: {self.done:,}/{self.total:,} rows ({rate:,.0f} rows/s)"
            )
            sys.stderr.flush()
            self.last = now

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")


def _build(model_or_factory: Any) -> nn.Module:
    model = model_or_factory if isinstance(model_or_factory, nn.Module) else None
    if model is None and callable(model_or_factory):
        model = model_or_factory()
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{WHERE}: expected an nn.Module or a factory returning one, but got "
            f"{type(model_or_factory if model is None else model).__name__}. "
            "Pass the model, or a zero-argument function building it."
        )
    return model


def _span(data: Pool, b: int, block_rows: int) -> tuple[int, int]:
    return b * block_rows, min((b + 1) * block_rows, data.n_rows)

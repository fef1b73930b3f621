"""Naive reference for measured drop rates: count kept / dropped entries of dropout calls."""

from __future__ import annotations

import math
from collections import defaultdict

import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

SIGMAS = 6.0


class RateMeter(TorchFunctionMode):
    """Counts, per p, the live inputs of every ``F.dropout`` call and how many it zeroed.

    Also records the ``dropout_p`` of every ``scaled_dot_product_attention`` call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[float, list[int]] = defaultdict(lambda: [0, 0])
        self.sdpa_p: list[float] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.sdpa_p.append(float(kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)))
        if func is not F.dropout:
            return func(*args, **kwargs)
        live = args[0] != 0
        out = func(*args, **kwargs)
        p = float(kwargs.get("p", args[1] if len(args) > 1 else 0.5))
        if p > 0:
            row = self.counts[round(p, 6)]
            row[0] += int(live.sum())
            row[1] += int((live & (out == 0)).sum())
        return out


def within(dropped: int, n: int, p: float) -> bool:
    """|dropped - n p| within SIGMAS binomial standard deviations."""
    return abs(dropped - n * p) <= SIGMAS * math.sqrt(n * p * (1 - p)) + 1e-9

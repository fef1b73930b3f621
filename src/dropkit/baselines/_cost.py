"""Measuring the cost of a prediction call: wall time and peak tensor memory on CPU.

``tracemalloc`` cannot see tensor memory (torch allocates outside Python's
allocator) and the CPU profiler's memory events are incomplete and noisy, so
peak memory is measured with a ``TorchDispatchMode`` that sees every aten op:
each new CPU tensor storage produced by an op is counted when it appears and
uncounted once it has been freed (checked at each following op). The peak is
the largest total of live storages created inside the call, i.e. the extra
tensor memory the call needs beyond its inputs and the model's parameters.
Kernel-internal scratch buffers and Python objects are not counted. Wall time
is measured in a separate run without the mode, which adds Python overhead,
after one untimed warm-up run (lazy imports, strategy selection, allocator).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

T = TypeVar("T")


class PeakTensorMemory(TorchDispatchMode):
    """Dispatch mode tracking the peak bytes of tensor storages created inside it.

    Attributes:
        peak_bytes: Largest total of live storages created in the block.
        current_bytes: Total still alive at the last op.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current_bytes = 0
        self.peak_bytes = 0

    def _sweep(self) -> None:
        dead = [key for key, (ref, _) in self._live.items() if ref.expired()]
        for key in dead:
            self.current_bytes -= self._live.pop(key)[1]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self._sweep()
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._live:
                    size = storage.nbytes()
                    self._live[key] = (StorageWeakRef(storage), size)
                    self.current_bytes += size
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        return out


def measure(
    fn: Callable[[], T], *, memory: bool = True, warmup: bool = True
) -> tuple[T, float, int | None]:
    """Run ``fn`` once untimed, once timed, then once under :class:`PeakTensorMemory`.

    Args:
        fn: The prediction call; it must be deterministic enough to rerun.
        memory: Whether to run the memory-tracking pass.
        warmup: Whether to run the untimed warm-up pass.

    Returns:
        ``(result of the timed run, wall seconds, peak bytes or None)``.
    """
    if warmup:
        fn()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    if not memory:
        return result, wall, None
    with PeakTensorMemory() as tracker:
        fn()
    return result, wall, tracker.peak_bytes

"""Refuse, before it runs, an ``mc_predict`` whose kept samples cannot fit in memory.

``keep_samples=True`` stores ``(S, N, ...)`` outputs on the CPU (plus one copy
when the batches are joined), so the memory grows with ``S * N``. The bound is
checked twice: before any forward, from the row count and the smallest possible
output (two float32 classes, or one regression value per row), and after the
first sample, from the real size of one output row.

No paper here: plumbing for :func:`dropkit.mc_predict`.
"""

from __future__ import annotations

import os

from dropkit._validation import _fail

WHERE = "mc_predict"


def memory_limit() -> int:
    """Bytes kept samples may take: half of this machine's physical memory."""
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # not POSIX: assume 16 GiB
        total = 16 * 2**30
    return total // 2


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_kept_bytes(samples: int, rows: int, row_bytes: float, *, exact: bool) -> None:
    """Raise ValueError if ``samples * rows * row_bytes`` kept bytes exceed :func:`memory_limit`.

    Args:
        samples: Samples per row that would be kept.
        rows: Rows whose samples are kept.
        row_bytes: Bytes of one sample of one row (a lower bound when not ``exact``).
        exact: Whether ``row_bytes`` was measured (else it is the smallest possible).

    Raises:
        ValueError: With the estimate, the limit and the fix.
    """
    need = float(samples) * rows * row_bytes
    limit = memory_limit()
    if need <= limit:
        return
    what = "would need" if exact else "would need at least"
    raise _fail(
        ValueError,
        WHERE,
        f"kept samples to fit in memory (at most {_gib(limit)}, half of this machine's)",
        f"keep_samples=True with {samples} samples x {rows} rows, which {what} {_gib(need)}",
        "Pass keep_samples=False (every summary streams in constant memory), fewer "
        "samples, or fewer inputs per call.",
    )

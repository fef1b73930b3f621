"""Bulk first-touch of freshly allocated CPU output buffers.

A new large CPU tensor is mapped to pages that do not exist yet: the first
write to each 4 KiB page traps into the kernel, which zeroes it. For a fused
dropout kernel that trap-per-page costs more than the arithmetic. Linux 5.14+
can map a whole range in one system call, ``madvise(MADV_POPULATE_WRITE)``,
which skips the per-page trap; for outputs of :data:`MIN_BYTES` and more each
kernel worker populates its own share just before writing it. ``dropkit bench
kernels`` times the kernel with and without it (BENCHMARKS.md).

Populating never changes the contents of memory: pages already mapped are left
as they are. Where the call is unavailable (other systems, older kernels,
sandboxes that refuse it) :func:`populate` does nothing and the kernels fault
pages in as usual; ``DROPKIT_POPULATE=0`` turns it off.

References:
    Linux ``madvise(2)``, ``MADV_POPULATE_WRITE`` (Linux 5.14, 2021).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable

MADV_POPULATE_WRITE = 23
PAGE = 4096
#: Outputs smaller than this are not populated. glibc serves allocations from
#: 32 MiB up with a fresh mapping every time, smaller ones mostly from
#: recycled, already-mapped heap memory, where populating only costs (an extra
#: system call for pages that exist already; ``dropkit bench kernels`` times both).
MIN_BYTES = 32 << 20

_madvise: Callable[[int, int, int], int] | None = None
_enabled: bool | None = None


def _load() -> bool:
    """Resolve libc's ``madvise`` once; False where populating is unavailable."""
    global _madvise, _enabled
    if _enabled is not None:
        return _enabled
    _enabled = False
    if sys.platform != "linux" or os.environ.get("DROPKIT_POPULATE", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    _madvise, _enabled = fn, True
    return True


def worth(nbytes: int) -> bool:
    """Whether an output of ``nbytes`` should be populated before writing."""
    return nbytes >= MIN_BYTES and _load()


def populate(addr: int, nbytes: int) -> None:
    """Map the whole pages inside ``[addr, addr + nbytes)`` for writing.

    Only pages entirely inside the range are touched (the partial pages at
    either end belong partly to other allocations and fault in normally). A
    refused call (an old kernel answers ``EINVAL``) switches populating off for
    the rest of the process.
    """
    global _enabled
    if not _load():
        return
    lo = (addr + PAGE - 1) // PAGE * PAGE
    hi = (addr + nbytes) // PAGE * PAGE
    if hi <= lo or _madvise is None:
        return
    if _madvise(lo, hi - lo, MADV_POPULATE_WRITE) != 0:
        _enabled = False

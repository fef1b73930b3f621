"""A persistent pool of Python threads for the numba CPU kernel.

The compiled kernel releases the GIL (``nogil=True``), so plain Python threads
run it on several cores without any OpenMP runtime. Using numba's own
``parallel=True`` instead initialises a second OpenMP thread pool beside
PyTorch's: both spin-wait for work, so every later small torch op waits for
cores the other pool holds (and ``torch.get_num_threads()`` changed). The pool
is re-created in a forked child, whose inherited threads do not exist.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)
_lock = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    key = (os.getpid(), workers)
    with _lock:
        if _pool is None or _pool_key != key:
            # a pool inherited through fork has no live threads: never shut it down
            if _pool is not None and _pool_key[0] == key[0]:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="dropkit-kernel")
            _pool_key = key
        return _pool


def run_split(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> None:
    """Run ``fn(*job)`` for every job, the last one on the calling thread."""
    if len(jobs) == 1:
        fn(*jobs[0])
        return
    pool = _executor(len(jobs) - 1)
    futures = [pool.submit(fn, *job) for job in jobs[:-1]]
    fn(*jobs[-1])
    for future in futures:
        future.result()

"""The CPU kernel must not disturb PyTorch's threading (a second OpenMP pool did)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("numba", reason="the numba kernel is in the 'fast' extra")

CODE = """
import torch, numba.np.ufunc.parallel as par
import dropkit.functional as DF
before = torch.get_num_threads()
y = DF.dropout(torch.randn(4_000_000), 0.1)
assert (y == 0).any()
print(before, torch.get_num_threads(), par._is_initialized)
"""


@pytest.mark.parametrize("threads", ["1", "2"])
def test_kernel_keeps_torch_threads_and_starts_no_openmp_pool(threads: str) -> None:
    env = {"OMP_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env
    )
    before, after, initialised = out.stdout.split()
    assert before == after == threads
    assert initialised == "False"

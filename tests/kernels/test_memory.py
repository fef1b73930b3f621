"""Bulk population of fresh output pages: contents kept, page faults gone."""

from __future__ import annotations

import mmap
import resource
import sys

import pytest
import torch

from dropkit.kernels import _memory

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="madvise populate is Linux-only")

BIG = 1 << 24  # float32 elements: 64 MiB


def _fresh() -> torch.Tensor:
    """A tensor on never-touched pages (its own private anonymous mapping).

    Not torch.empty: whether the allocator hands back fresh pages depends on
    what ran before in the process.
    """
    region = mmap.mmap(-1, BIG * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return torch.frombuffer(region, dtype=torch.float32)


def _write_faults(t: torch.Tensor) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t.fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _supported() -> None:
    probe = _fresh()
    _memory.populate(probe.data_ptr(), probe.numel() * 4)
    if not _memory._enabled:
        pytest.skip("this kernel refuses MADV_POPULATE_WRITE (needs Linux 5.14+)")


def test_populated_output_takes_no_page_faults_when_written() -> None:
    _supported()
    pages = BIG * 4 // _memory.PAGE
    assert _write_faults(_fresh()) > pages // 2  # the control: first touch faults per page
    out = _fresh()
    _memory.populate(out.data_ptr(), BIG * 4)
    assert _write_faults(out) < pages // 100


def test_populate_keeps_contents() -> None:
    _supported()
    x = torch.arange(BIG // 8, dtype=torch.float32)
    want = x.clone()
    _memory.populate(x.data_ptr() + 12, x.numel() * 4 - 20)  # unaligned ends
    assert torch.equal(x, want)


def test_small_ranges_and_switch_off_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _fresh()
    monkeypatch.setattr(_memory, "_enabled", False)
    _memory.populate(out.data_ptr(), BIG * 4)
    assert _write_faults(out) > BIG * 4 // _memory.PAGE // 2
    monkeypatch.setattr(_memory, "_enabled", None)
    monkeypatch.setenv("DROPKIT_POPULATE", "0")
    assert _memory._load() is False


def test_kernel_output_is_the_same_with_and_without_population(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("numba", reason="the numba kernel is in the 'fast' extra")
    from dropkit.kernels import seeded_dropout

    _supported()
    x = torch.randn(_memory.MIN_BYTES // 4 + 12_345, generator=torch.Generator().manual_seed(0))
    calls: list[int] = []
    real = _memory.populate

    def spy(addr: int, nbytes: int) -> None:
        calls.append(nbytes)
        real(addr, nbytes)

    monkeypatch.setattr(_memory, "populate", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        populated = seeded_dropout(x, 0.3, 77)
        assert len(calls) == 2  # each worker mapped its share
        assert sum(calls) == x.numel() * 4
        monkeypatch.setattr(_memory, "_enabled", False)
        plain = seeded_dropout(x, 0.3, 77)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(populated, plain)

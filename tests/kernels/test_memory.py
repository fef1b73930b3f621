"""Bulk population of fresh output pages: contents kept, page faults gone."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from dropkit.kernels import _memory

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="madvise populate is Linux-only")

BIG = 1 << 24  # float32 elements: 64 MiB, always a fresh mmap from the allocator


def _write_faults(t: torch.Tensor) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t.fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _supported() -> None:
    probe = torch.empty(BIG // 4)
    _memory.populate(probe.data_ptr(), probe.numel() * 4)
    if not _memory._enabled:
        pytest.skip("this kernel refuses MADV_POPULATE_WRITE (needs Linux 5.14+)")


def test_populated_output_takes_no_page_faults_when_written() -> None:
    _supported()
    fresh = torch.empty(BIG)
    pages = BIG * 4 // _memory.PAGE
    assert _write_faults(fresh) > pages // 2  # the control: first touch faults per page
    out = torch.empty(BIG)
    _memory.populate(out.data_ptr(), BIG * 4)
    assert _write_faults(out) < pages // 100


def test_populate_keeps_contents() -> None:
    _supported()
    x = torch.arange(BIG // 8, dtype=torch.float32)
    want = x.clone()
    _memory.populate(x.data_ptr() + 12, x.numel() * 4 - 20)  # unaligned ends
    assert torch.equal(x, want)


def test_small_ranges_and_switch_off_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    out = torch.empty(BIG)
    monkeypatch.setattr(_memory, "_enabled", False)
    _memory.populate(out.data_ptr(), BIG * 4)
    assert _write_faults(out) > BIG * 4 // _memory.PAGE // 2
    monkeypatch.setattr(_memory, "_enabled", None)
    monkeypatch.setenv("DROPKIT_POPULATE", "0")
    assert _memory._load() is False

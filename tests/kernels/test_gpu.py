"""CUDA path: the Triton kernel against the CPU kernel (same seed, same mask)."""

from __future__ import annotations

import pytest
import torch

from dropkit.kernels import bernoulli_dropout, draw_mask, seeded_dropout
from dropkit.kernels._ops import seeded_dropout_op

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU (torch.cuda.is_available() is False)",
    ),
]


@pytest.fixture(autouse=True)
def _triton() -> None:
    pytest.importorskip("triton", reason="triton is not installed")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (1000,), (3, 1025), (32, 512, 768)])
def test_cuda_equals_cpu_bit_for_bit(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    cpu = seeded_dropout(x, 0.1, 2024)
    gpu = seeded_dropout(x.cuda(), 0.1, 2024)
    assert gpu.device.type == "cuda" and gpu.dtype == dtype
    assert torch.equal(gpu.cpu(), cpu)


def test_cuda_backward_and_saved_state() -> None:
    x = torch.randn(256, 384, device="cuda", requires_grad=True)
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = seeded_dropout_op(x, torch.tensor(5), 0.2)
    grad = torch.randn_like(x)
    y.backward(grad)
    assert sum(saved) == 8
    assert torch.equal(x.grad, seeded_dropout(grad, 0.2, 5))
    assert torch.equal(x.grad.cpu() != 0, seeded_dropout(torch.ones(256, 384), 0.2, 5) != 0)


def test_cuda_non_contiguous_and_inplace() -> None:
    base = torch.randn(300, 500, device="cuda")
    t = base.t()
    want = seeded_dropout(t.cpu(), 0.3, 9)
    assert torch.equal(seeded_dropout(t, 0.3, 9).cpu(), want)
    assert seeded_dropout(t, 0.3, 9, inplace=True) is t
    assert torch.equal(t.cpu(), want)


def test_cuda_global_seed_reproduces() -> None:
    x = torch.ones(10_000, device="cuda")
    torch.manual_seed(3)
    a = bernoulli_dropout(x, 0.5)
    torch.manual_seed(3)
    b = bernoulli_dropout(x.cpu(), 0.5)
    assert torch.equal(a.cpu(), b)  # the seed comes from the CPU generator on both devices


def test_cuda_structured_masks_equal_cpu() -> None:
    # the precise (one word per element, 32-bit threshold) form on both devices
    def mask(device: str) -> torch.Tensor:
        like = torch.empty(0, device=device)
        return draw_mask((8, 1000), 0.003, like=like, generator=torch.Generator().manual_seed(3))

    assert torch.equal(mask("cuda").cpu(), mask("cpu"))


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "broadcast"])
def test_cuda_layouts_keep_strides_and_cpu_masks(layout: str) -> None:
    base = torch.randn(8, 16, 12, 10, generator=torch.Generator().manual_seed(1))
    views = {
        "channels_last": lambda t: t.to(memory_format=torch.channels_last),
        "transposed": lambda t: t.transpose(-1, -2),
        "sliced": lambda t: t[..., ::2],
        "broadcast": lambda t: t[:1, :1].expand(8, 16, 12, 10),  # like sum()'s gradient
    }
    cpu_x, gpu_x = views[layout](base), views[layout](base.cuda())
    cpu, gpu = seeded_dropout(cpu_x, 0.3, 11), seeded_dropout(gpu_x, 0.3, 11)
    assert gpu.stride() == cpu.stride() == torch.empty_like(cpu_x).stride()
    assert torch.equal(gpu.cpu(), cpu)


def test_cuda_sum_backward_reads_the_broadcast_gradient() -> None:
    x = torch.randn(64, 300, device="cuda").to(memory_format=torch.contiguous_format)
    x = x.requires_grad_(True)
    seeded_dropout_op(x, torch.tensor(4), 0.25).sum().backward()
    assert torch.equal(x.grad.cpu(), seeded_dropout(torch.ones(64, 300), 0.25, 4))

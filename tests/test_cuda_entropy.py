"""binary_entropy and LookupFreeQuantizer on CUDA tensors (ATen/cuBLAS GEMMs, no kernel of ours):
against binary_entropy in float64 on the CPU (itself checked against the enumeration of every
code in test_binary_entropy.py), across chunks of tokens."""

import pytest
import torch

from bitcodes_ext import LookupFreeQuantizer, binary_entropy, code_tables
from oracle import binary_entropy_oracle


@pytest.fixture
def ieee_float32():
    """cuBLAS in full float32: with TF32 the GEMMs round their inputs to 10 mantissa bits."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("group_size", [None, 5])
def test_sixteen_bits_equal_float64_on_the_cpu(cuda, ieee_float32, group_size, monkeypatch):
    # Chunks of 2048 tokens (tables of 2 x 256 entries each): two whole chunks and a partial one.
    for device_type in ("cpu", "cuda"):  # the emulator's "cuda" tensors are on the CPU
        monkeypatch.setitem(code_tables.CHUNK_TABLE_ENTRIES, device_type, 2048 * 512)
    logits64 = torch.randn(5000, 16, dtype=torch.float64) * 2
    assert code_tables.chunk_tokens(16, cuda) == 2048
    logits = logits64.float().to(cuda).requires_grad_()
    per_sample, codebook = binary_entropy(logits, group_size)
    (per_sample - codebook).backward()
    expected64 = logits64.float().double().requires_grad_()
    truth = binary_entropy(expected64, group_size)
    (truth[0] - truth[1]).backward()
    torch.testing.assert_close(per_sample.double().cpu(), truth[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(codebook.double().cpu(), truth[1], rtol=1e-5, atol=0)
    torch.testing.assert_close(logits.grad.double().cpu(), expected64.grad, rtol=1e-3, atol=1e-8)


def test_float64_on_the_device_is_exact(cuda):
    logits = torch.randn(300, 12, dtype=torch.float64) * 3
    ours = binary_entropy(logits.to(cuda))
    for a, b in zip(ours, binary_entropy_oracle(logits)):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-11, atol=0)


def test_lookup_free_quantizer_runs_on_the_device(cuda):
    layer = LookupFreeQuantizer(14, 32, spherical=True).to(cuda).train()
    x = torch.randn(4, 256, 32, device=cuda, requires_grad=True)
    quantized, codes, loss = layer(x)
    (quantized.square().mean() + loss).backward()
    assert codes.device.type == cuda.type and x.grad.isfinite().all()
    layer.eval()
    quantized, codes, _ = layer(x)
    assert torch.equal(layer.from_codes(codes), quantized)

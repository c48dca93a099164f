"""Exact-zero margins, and the bit they must give: 0, as the reference's argmax gives (a tie, like
NaN, picks the even code of its pair).

Zero tokens (padding), equal codebook pairs (an untrained copy) and x orthogonal to a pair, in
eval and in training with noise that cancels the margin exactly, for both metrics, on every
backend against the float64 oracle. The data are small integers (oracle.integer_case), so every
margin is exact in every dtype and summation order: a zero margin is exactly 0, never within
rounding of it. tests/test_reference_package.py checks the same cases against bitcodes-pytorch,
test_vq.py vq's equal-distance ties, test_cuda_bitcodes.py the CUDA kernels.
"""

import pytest
import torch

from bitcodes_ext import functional, reference
from oracle import DTYPES, cancelling_noise, close_tol, decode_oracle, integer_case, train_oracle


@pytest.mark.parametrize("tokens", [40, 200])  # 1-bit look-up tables below 64 tokens, 4-bit ones from 64
@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_zero_margins_give_bit_0_in_eval(backend, dtype, metric, tokens):
    x, codebook = integer_case(tokens, 12, 19, dtype)
    margin = reference.pair_logits(x.double(), codebook.double(), metric)
    assert (margin == 0).float().mean() > 0.3 and (margin > 0).any()  # mostly ties, and both bits
    y, bits = functional.bitcodes(x, codebook, training=False, metric=metric, backend=backend)
    assert torch.equal(bits, (margin > 0).long())
    assert torch.equal(y, decode_oracle(bits, codebook).to(dtype))  # sums of small integers: exact
    assert torch.equal(functional.decode(bits, codebook, backend=backend), y)


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_zero_margins_give_bit_0_in_training(backend, dtype, metric):
    x, codebook = integer_case(150, 12, 19, dtype)
    noise = cancelling_noise(x, codebook, metric)
    z = reference.pair_logits(x.double(), codebook.double(), metric) + noise
    assert (z == 0).float().mean() > 0.4 and (z > 0).any()
    x.requires_grad_()
    codebook.requires_grad_()
    y, bits = functional.bitcodes(x, codebook, training=True, temperature=0.5, metric=metric, noise=noise, backend=backend)
    assert torch.equal(bits, (z > 0).long())
    # The backward reads the bits from z again: a z = 0 bit must be 0 there too.
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    dx, dc = torch.autograd.grad(y, (x, codebook), grad_y)
    y64, bits64, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=0.5, metric=metric)
    assert torch.equal(bits64, bits)
    tol = close_tol(dtype)
    torch.testing.assert_close(y, y64.to(dtype), **tol)
    torch.testing.assert_close(dx.double(), dx64, rtol=tol["rtol"], atol=tol["atol"] * dx64.abs().max().item())
    torch.testing.assert_close(dc.double(), dc64, rtol=tol["rtol"], atol=tol["atol"] * dc64.abs().max().item())

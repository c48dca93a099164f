"""Bitcodes.bit_logits: the logits its bits threshold, and binary_entropy of them as a usage
regulariser, on every backend of the forward they must agree with."""

import pytest
import torch

from bitcodes_ext import Bitcodes, binary_entropy
from oracle import DTYPES, acc_dtype, certify_bits, integer_case, margins


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["dot", "euclidean"])
def test_signs_are_the_eval_bits_up_to_certified_near_ties(backend, dtype, metric):
    layer = Bitcodes(24, 10, temperature=0.5, metric=metric, backend=backend).to(dtype).eval()
    x = torch.randn(3, 50, 24, dtype=torch.float64).to(dtype)
    logits = layer.bit_logits(x)
    assert logits.shape == (3, 50, 10) and logits.dtype == acc_dtype(dtype)
    _, bits = layer(x)
    certify_bits((logits > 0).long(), x, layer.codebook.detach(), accumulated_in=acc_dtype(dtype), metric=metric)
    certify_bits(bits, x, layer.codebook.detach(), accumulated_in=acc_dtype(dtype), metric=metric)


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
def test_values_are_the_margin_over_the_temperature(metric):
    layer = Bitcodes(16, 6, temperature=0.25, metric=metric).double()
    x = torch.randn(40, 16, dtype=torch.float64)
    z, _ = margins(x, layer.codebook.detach(), metric)
    torch.testing.assert_close(layer.bit_logits(x), z / 0.25, rtol=1e-12, atol=1e-12)


def test_exact_zero_margins_are_zero_logits_and_zero_bits():
    x, codebook = integer_case(60, 8, 5, torch.float32)
    layer = Bitcodes(8, 5).eval()
    layer.codebook.data.copy_(codebook)
    logits = layer.bit_logits(x)
    _, bits = layer(x)
    assert (logits == 0).any()
    assert torch.equal(bits, (logits > 0).long())


def test_entropy_of_bit_logits_trains_the_codebook_and_the_encoder():
    encoder = torch.nn.Linear(12, 12)
    layer = Bitcodes(12, 8).train()
    x = torch.randn(64, 12)
    per_sample, codebook = binary_entropy(layer.bit_logits(encoder(x)))
    (per_sample - codebook).backward()
    assert layer.codebook.grad.abs().sum() > 0 and encoder.weight.grad.abs().sum() > 0


def test_bad_input_is_a_clear_error():
    layer = Bitcodes(8, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 8\)"):
        layer.bit_logits(torch.randn(3, 7))
    with pytest.raises(TypeError, match="x must be a float"):
        layer.bit_logits(torch.ones(3, 8, dtype=torch.int64))

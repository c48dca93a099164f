"""Odd layouts and values: non-contiguous, expanded and strided inputs, Inf, and index
arithmetic past 2^31 elements."""

import pytest
import torch

from bitcodes_ext import Bitcodes, functional, reference


def both_backends(x, codebook, **kwargs):
    native = functional.bitcodes(x, codebook, backend="native", **kwargs)
    fallback = functional.bitcodes(x.contiguous(), codebook.contiguous(), backend="torch", **kwargs)
    return native, fallback


@pytest.mark.parametrize(
    "make_x",
    [
        lambda: torch.randn(16, 70).t(),  # transposed: (70, 16), strides (1, 70)
        lambda: torch.randn(1, 16).expand(50, 16),  # expanded: stride 0
        lambda: torch.randn(60, 48)[::3, 5:21],  # sliced rows and columns
        lambda: torch.randn(4, 30, 16).permute(1, 0, 2),  # permuted leading dims
    ],
)
def test_non_contiguous_x(native, make_x):
    x = make_x()
    codebook = torch.randn(2 * 7, 16)
    (y, bits), (y_ref, bits_ref) = both_backends(x, codebook, training=False)
    assert torch.equal(bits, bits_ref)
    torch.testing.assert_close(y, y_ref)


def test_non_contiguous_codebook_noise_and_bits(native):
    codebook = torch.randn(16, 2 * 5).t()  # (10, 16), not contiguous
    x = torch.randn(40, 16)
    noise = torch.randn(5, 40).t()
    (y, bits), (y_ref, bits_ref) = both_backends(x, codebook, training=True, noise=noise)
    assert torch.equal(bits, bits_ref)
    torch.testing.assert_close(y, y_ref)
    layer = Bitcodes(16, 5)
    strided_bits = torch.randint(0, 2, (5, 40)).t()
    y = layer.from_bits(strided_bits)
    torch.testing.assert_close(y, reference.decode(strided_bits.contiguous(), layer.codebook.detach()))


def test_inf_inputs(native):
    codebook = torch.randn(2 * 6, 8)
    x = torch.randn(10, 8)
    x[2, 1] = float("inf")
    x[3] = float("-inf")
    for kwargs in (dict(training=False), dict(training=True, noise=torch.randn(10, 6))):
        (y, bits), (y_ref, bits_ref) = both_backends(x, codebook, **kwargs)
        assert torch.equal(bits, bits_ref)  # +inf margins give 1, NaN ones (inf - inf) give 0
        assert torch.isfinite(y).all()  # y is a sum of codes, whatever x was
    layer = Bitcodes(8, 6)
    with torch.no_grad():
        layer.codebook[3, 0] = float("inf")
    x = torch.randn(5, 8)
    y, bits = layer.eval()(x)
    _, bits_ref = functional.bitcodes(x, layer.codebook.detach(), training=False, backend="torch")
    # Pair 1's difference is +inf in feature 0: its margin is x[:, 0] * inf, so its bit is x[:, 0] > 0.
    assert torch.equal(bits, bits_ref) and torch.equal(bits[:, 1], (x[:, 0] > 0).long())
    # y is the sum of the chosen codes: +inf in feature 0 where code 3 is chosen, finite elsewhere.
    # (The reference's even + bits (odd - even) form would give 0 * inf = NaN where it is not.)
    chosen = layer.codebook.detach().double()[2 * torch.arange(6) + bits]
    torch.testing.assert_close(y.double(), chosen.sum(-2))


def mem_available_gb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def test_more_than_2_31_elements(native):
    # 2^31 + 8192 bfloat16 elements of x (4.3 GB) and as many of y: token offsets past int32.
    if mem_available_gb() < 16:
        pytest.skip("needs 16 GB of free memory")
    features, rows = 1024, 8
    pattern = torch.randn(rows, features, dtype=torch.bfloat16)
    x = pattern.repeat(2**31 // features // rows + 1, 1)
    assert x.numel() > 2**31
    codebook = torch.randn(2 * 4, features, dtype=torch.bfloat16)
    y, bits = functional.bitcodes(x, codebook, training=False, backend="native")
    y_small, bits_small = functional.bitcodes(pattern, codebook, training=False, backend="native")
    del x
    assert torch.equal(bits[-rows:], bits_small) and torch.equal(bits[:rows], bits_small)
    assert torch.equal(y[-rows:], y_small) and torch.equal(y[:rows], y_small)

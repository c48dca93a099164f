"""Parity with the real bitcodes-pytorch package, for our layer on every backend."""

import pytest
import torch
from bitcodes_pytorch import Bitcodes as PackageBitcodes
from bitcodes_pytorch import to_bits as package_to_bits
from bitcodes_pytorch import to_decimal as package_to_decimal

import bitcodes_ext
from bitcodes_ext import Bitcodes, reference
from oracle import certify_bits, close_tol, train_oracle


def pair(features, num_bits, temperature, backend, dtype=torch.float32):
    package = PackageBitcodes(features, num_bits, temperature).to(dtype)
    ours = Bitcodes(features, num_bits, temperature, backend=backend).to(dtype)
    ours.load_state_dict(package.state_dict())
    return package, ours


def test_state_dict_compatible_both_ways():
    package, ours = PackageBitcodes(12, 5, 1.0), Bitcodes(12, 5)
    assert ours.state_dict().keys() == package.state_dict().keys() == {"codebook"}
    assert ours.codebook.shape == package.codebook.shape == (10, 12)
    package.load_state_dict(ours.state_dict())
    assert torch.equal(package.codebook, ours.codebook)


def test_constructor_matches_positional_order():
    layer = Bitcodes(8, 4, 10)
    assert (layer.features, layer.num_bits, layer.temperature) == (8, 4, 10)
    torch.manual_seed(0)
    expected = torch.randn(8, 8)
    torch.manual_seed(0)
    assert torch.equal(Bitcodes(8, 4).codebook.data, expected)  # randn init, as the package


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch,tokens,features,num_bits", [(1, 6, 8, 4), (2, 100, 64, 8), (3, 33, 129, 31)])
def test_eval_matches_package(backend, batch, tokens, features, num_bits, dtype):
    # The package's eval only runs in float32 (its one-hot is .float()), so it sees float32
    # copies of the same `dtype`-rounded inputs.
    package, ours = pair(features, num_bits, 1.0, backend)
    ours.to(dtype)
    package.eval(), ours.eval()
    x = torch.randn(batch, tokens, features).to(dtype)
    with torch.no_grad():
        package.codebook.copy_(ours.codebook.float())
        y_pkg, bits_pkg = package(x.float())
        y, bits = ours(x)
    certify_bits(bits, x, ours.codebook, accumulated_in=torch.float32)
    certify_bits(bits_pkg, x, ours.codebook, accumulated_in=torch.float32)
    same = (bits == bits_pkg).all(-1, keepdim=True)
    assert same.float().mean() > 0.9
    tol = close_tol(torch.float32 if dtype == torch.float64 else dtype)  # y_pkg is float32
    torch.testing.assert_close(torch.where(same, y, 0), torch.where(same, y_pkg.to(dtype), 0), **tol)


def test_eval_gradient_matches_package(backend):
    package, ours = pair(16, 6, 1.0, backend)
    package.eval(), ours.eval()
    x = torch.randn(2, 50, 16, dtype=torch.float64).float()
    y_pkg, bits_pkg = package(x)
    y, bits = ours(x)
    assert torch.equal(bits, bits_pkg)
    grad = torch.randn_like(y)
    (dc_pkg,) = torch.autograd.grad(y_pkg, package.codebook, grad)
    (dc,) = torch.autograd.grad(y, ours.codebook, grad)
    torch.testing.assert_close(dc, dc_pkg)


def gumbel_noise_like_package(batch, tokens, num_bits, seed):
    """The noise F.gumbel_softmax draws after torch.manual_seed(seed), as g1 - g0 per bit."""
    torch.manual_seed(seed)
    gumbels = -torch.empty(batch, tokens, num_bits, 2).exponential_().log()
    return gumbels[..., 1] - gumbels[..., 0]


@pytest.mark.parametrize("temperature", [0.3, 1.0, 10.0])
def test_train_matches_package_with_the_same_noise(backend, temperature):
    package, ours = pair(24, 10, temperature, backend)
    package.train(), ours.train()
    x = torch.randn(2, 40, 24, requires_grad=True)
    grad = torch.randn(2, 40, 24)

    torch.manual_seed(99)
    y_pkg, _ = package(x)
    dx_pkg, dc_pkg = torch.autograd.grad(y_pkg, (x, package.codebook), grad)

    noise = gumbel_noise_like_package(2, 40, 10, seed=99)
    y, bits = ours(x, noise)
    dx, dc = torch.autograd.grad(y, (x, ours.codebook), grad)

    # Both are float32 sums over tokens in different orders: compare at float32 rounding of
    # the largest entry, against each other and against the float64 oracle.
    _, _, dx64, dc64 = train_oracle(x, ours.codebook, noise, grad, temperature=temperature)
    torch.testing.assert_close(y, y_pkg)
    for ours_grad, package_grad, exact in ((dx, dx_pkg, dx64), (dc, dc_pkg, dc64)):
        atol = 2e-6 * exact.abs().max().item()
        torch.testing.assert_close(ours_grad.double(), exact, rtol=1e-5, atol=atol)
        torch.testing.assert_close(package_grad.double(), exact, rtol=1e-5, atol=atol)
    # Our deliberate deviation: bits are those that produced y.
    torch.testing.assert_close(ours.from_bits(bits), y)


def test_reference_draws_the_package_noise_under_the_same_seed():
    package, _ = pair(12, 7, 2.0, "torch")
    package.train()
    x = torch.randn(3, 20, 12)
    torch.manual_seed(5)
    y_pkg, _ = package(x)
    torch.manual_seed(5)
    y, _ = reference.bitcodes(x, package.codebook, training=True, temperature=2.0)
    torch.testing.assert_close(y, y_pkg)


def test_eval_from_bits_matches_package():
    package, ours = pair(8, 4, 10.0, "torch")
    bits = torch.randint(0, 2, (1, 6, 4))
    torch.testing.assert_close(ours.from_bits(bits), package.from_bits(bits))


def test_bit_utilities_match_package():
    bits = torch.randint(0, 2, (3, 9, 12))
    assert torch.equal(bitcodes_ext.to_decimal(bits), package_to_decimal(bits))
    indices = torch.randint(0, 2**12, (3, 9))
    assert torch.equal(bitcodes_ext.to_bits(indices, 12), package_to_bits(indices, 12))

"""Parity with the real bitcodes-pytorch package, for our layer on every backend."""

import pytest
import torch
import torch.nn.functional as F
from bitcodes_pytorch import Bitcodes as PackageBitcodes
from bitcodes_pytorch import to_bits as package_to_bits
from bitcodes_pytorch import to_decimal as package_to_decimal

import bitcodes_ext
from bitcodes_ext import Bitcodes, reference
from oracle import DTYPES, certify_bits, close_tol, integer_case, train_oracle


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


@pytest.mark.parametrize("dtype", DTYPES)
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


def tied_pair(tokens, temperature, backend):
    """The package and our layer with one integer codebook (oracle.integer_case), and x (2, tokens, 12) for it:
    zero tokens, equal pairs and x orthogonal to a pair give exactly equal pair logits."""
    package, ours = pair(12, 19, temperature, backend)
    x, codebook = integer_case((2, tokens), 12, 19, torch.float32)
    with torch.no_grad():
        package.codebook.copy_(codebook)
        ours.codebook.copy_(codebook)
    pair_logits = torch.einsum("bmd,nd->bmn", x, codebook).unflatten(-1, (19, 2))  # (x.c[2i], x.c[2i+1])
    return package, ours, x, pair_logits


@pytest.mark.parametrize("tokens", [40, 200])  # 1-bit and 4-bit look-up tables
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_logit_ties_match_package_in_eval(backend, dtype, tokens):
    # At a tie the package's argmax picks the first code of the pair: bit 0, for padding tokens too.
    package, ours, x, pair_logits = tied_pair(tokens, 1.0, backend)
    ours.to(dtype)  # integers: exact in every dtype, so the package (float32 only) sees the same inputs
    package.eval(), ours.eval()
    tied = pair_logits[..., 0] == pair_logits[..., 1]
    assert tied.float().mean() > 0.3 and tied[:, ::5].all()  # every 5th token is zero
    with torch.no_grad():
        y_pkg, bits_pkg = package(x)
        y, bits = ours(x.to(dtype))
        assert torch.equal(bits_pkg, torch.where(tied, 0, bits_pkg))
        assert torch.equal(bits, bits_pkg)
        assert torch.equal(y, y_pkg.to(dtype))  # sums of small integers: exact
        assert torch.equal(ours.from_bits(bits), y) and torch.equal(package.from_bits(bits).to(dtype), y)


def test_zero_logit_ties_match_package_in_training(backend, monkeypatch):
    """In training the package adds Gumbel samples (g0, g1) to each pair's logits (l0, l1) and takes
    the argmax. Its draw replaced by g = (l1, l0) on half the pairs, those tie exactly
    (l0 + l1 == l1 + l0) and it picks bit 0; our noise g1 - g0 = l0 - l1 = -logit makes z exactly 0
    there, and must give bit 0 too. Elsewhere g = (0, 0): the noise-free decision, ties included."""
    package, ours, x, pair_logits = tied_pair(100, 0.5, backend)
    package.train(), ours.train()
    cancelled = torch.rand(pair_logits.shape[:-1]) < 0.5
    gumbels = torch.where(cancelled.unsqueeze(-1), pair_logits.flip(-1), torch.zeros_like(pair_logits))
    gumbel_softmax = F.gumbel_softmax

    def with_these_gumbels(logits, tau=1, hard=False, eps=1e-10, dim=-1):
        # F.gumbel_softmax itself, its own draw made exactly 0 (-log(1)), `gumbels` added instead.
        with monkeypatch.context() as draw:
            draw.setattr(torch.Tensor, "exponential_", lambda self, *args, **kwargs: self.fill_(1.0))
            return gumbel_softmax(logits + gumbels, tau=tau, hard=hard, dim=dim)

    monkeypatch.setattr(F, "gumbel_softmax", with_these_gumbels)
    y_pkg, _ = package(x)
    noise = gumbels[..., 1] - gumbels[..., 0]
    z = pair_logits[..., 1] - pair_logits[..., 0] + noise
    assert (z == 0).float().mean() > 0.5 and (z > 0).any()
    y, bits = ours(x, noise)
    assert torch.equal(bits, (z > 0).long())
    torch.testing.assert_close(y, y_pkg)  # y_hard - y_soft + y_soft: within rounding of the picked codes' sum
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

"""The compiled CPU kernels against the float64 oracle (reference.py)."""

import pytest
import torch

from bitcodes_ext import Bitcodes, functional
from oracle import DTYPES, acc_dtype, certify_bits, close_tol, decode_oracle, make, tie_free_noise, train_oracle

# (leading dims, features, num_bits): odd sizes hit every vector tail and register-block edge,
# >= 64 tokens switch the overlapped sum to 4-bit look-up tables.
SHAPES = [((3,), 5, 1), ((2, 7), 8, 4), ((130,), 33, 13), ((4, 50), 64, 8), ((97,), 100, 37), ((300,), 17, 64)]
# Look-up tables wide enough to be cut into several slices of features (3 to 5, by dtype and
# table size); only y reads them.
WIDE_TABLES = [((100,), 300, 64), ((40,), 600, 64)]


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,features,num_bits", SHAPES + WIDE_TABLES)
def test_eval_matches_oracle(native, shape, features, num_bits, dtype, metric):
    x, codebook = make(shape, features, num_bits, dtype)
    y, bits = functional.bitcodes(x, codebook, training=False, metric=metric, backend=native)
    assert y.shape == x.shape and y.dtype == dtype
    assert bits.shape == (*shape, num_bits) and bits.dtype == torch.int64
    certify_bits(bits, x, codebook, accumulated_in=acc_dtype(dtype), metric=metric)
    torch.testing.assert_close(y, decode_oracle(bits, codebook).to(dtype), **close_tol(dtype))


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,features,num_bits", SHAPES)
def test_train_matches_oracle(native, shape, features, num_bits, dtype, metric):
    x, codebook = make(shape, features, num_bits, dtype)
    x.requires_grad_()
    codebook.requires_grad_()
    noise = tie_free_noise(x.detach(), codebook.detach(), metric, dtype=torch.float64)
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    y, bits = functional.bitcodes(x, codebook, training=True, temperature=0.7, metric=metric, noise=noise, backend=native)
    dx, dc = torch.autograd.grad(y, (x, codebook), grad_y)
    y64, bits64, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=0.7, metric=metric)
    assert torch.equal(bits, bits64)  # the noise keeps every margin far from a tie
    tol = close_tol(dtype)
    torch.testing.assert_close(y, y64.to(dtype), **tol)
    torch.testing.assert_close(dx.double(), dx64, rtol=tol["rtol"], atol=tol["atol"] * dx64.abs().max().item())
    torch.testing.assert_close(dc.double(), dc64, rtol=tol["rtol"], atol=tol["atol"] * dc64.abs().max().item())


@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_gradient_reaches_only_the_codebook(native, dtype):
    x, codebook = make((2, 70), 24, 9, dtype)
    x.requires_grad_()
    codebook.requires_grad_()
    y, bits = functional.bitcodes(x, codebook, training=False, backend=native)
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    y.backward(grad_y)
    assert x.grad is None
    _, dc64 = decode_oracle(bits, codebook, grad_y)
    tol = close_tol(dtype)
    torch.testing.assert_close(codebook.grad.double(), dc64, rtol=tol["rtol"], atol=tol["atol"] * dc64.abs().max().item())


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("num_tokens", [5, 200])
def test_from_bits_reproduces_y(native, training, num_tokens):
    layer = Bitcodes(19, 11, temperature=0.5).train(training)
    y, bits = layer(torch.randn(num_tokens, 19))
    assert torch.equal(layer.from_bits(bits), y)
    assert torch.equal(layer.from_bits(bits.bool()), y)
    assert torch.equal(layer.from_bits(bits.to(torch.int8)), y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
def test_from_bits_reproduces_y_in_every_dtype_on_every_backend(backend, dtype, training):
    # The fallback's decode once rounded bf16/fp16 on the way (c[2i+1] - c[2i] and the sum of the
    # even rows in the input dtype), so from_bits(bits) missed y by an ulp on the torch backend.
    layer = Bitcodes(64, 16, backend=backend).to(dtype).train(training)
    y, bits = layer(torch.randn(512, 64).to(dtype))
    assert torch.equal(layer.from_bits(bits), y)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 3, 4)])
@pytest.mark.parametrize("training", [False, True])
def test_any_leading_dims_including_empty(native, shape, training):
    layer = Bitcodes(6, 3).train(training)
    x = torch.randn(*shape, 6, requires_grad=True)
    y, bits = layer(x)
    assert y.shape == x.shape and bits.shape == (*shape, 3)
    y.sum().backward()
    assert layer.codebook.grad.shape == layer.codebook.shape
    assert layer.from_bits(bits).shape == x.shape


def test_noise_drawn_in_kernel_is_logistic_and_seeded(native):
    x = torch.zeros(20000, 4)  # zero logits: bits are the sign of the noise alone
    codebook = torch.randn(2 * 8, 4)
    torch.manual_seed(7)
    y1, bits1 = functional.bitcodes(x, codebook, training=True, backend=native)
    torch.manual_seed(7)
    y2, bits2 = functional.bitcodes(x, codebook, training=True, backend=native)
    _, bits3 = functional.bitcodes(x, codebook, training=True, backend=native)
    assert torch.equal(bits1, bits2) and torch.equal(y1, y2)
    assert not torch.equal(bits1, bits3)  # the generator advanced
    assert abs(bits1.float().mean().item() - 0.5) < 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_drawn_noise_depends_only_on_seed_token_and_bit(native, dtype):
    # With x = 0, z is the drawn noise itself. Token t reads Philox subsequence t: its noise does
    # not depend on the other tokens of the call (1001 tokens end in a partial tile whose 41 x 3
    # numbers are not whole vectors, 1100 do not), and no two tokens share it (tiles included).
    codebook = torch.randn(2 * 3, 4, dtype=dtype)

    def drawn(tokens):
        torch.manual_seed(11)
        return torch.ops.bitcodes_ext.forward(torch.zeros(tokens, 4, dtype=dtype), codebook, None, 1.0, True, False)[2]

    short, long = drawn(1001), drawn(1100)
    torch.testing.assert_close(short, long[:1001], rtol=1e-6, atol=1e-6)
    assert torch.unique(long, dim=0).shape[0] == long.shape[0]
    assert torch.unique(long.T, dim=0).shape[0] == long.shape[1]


@pytest.mark.parametrize("training", [False, True])
def test_gradients_with_more_tiles_than_chunks(native, training):
    # 67 tiles of 48 tokens, summed in 64 chunks (the most there are): some chunks hold two tiles,
    # and every tile must be in one.
    x, codebook = make(66 * 48 + 20, 6, 5, torch.float64)
    x.requires_grad_()
    codebook.requires_grad_()
    grad_y = torch.randn(x.shape, dtype=torch.float64)
    tol = close_tol(torch.float64)
    if training:
        noise = tie_free_noise(x.detach(), codebook.detach(), dtype=torch.float64)
        y, _ = functional.bitcodes(x, codebook, training=True, temperature=0.7, noise=noise, backend=native)
        dx, dc = torch.autograd.grad(y, (x, codebook), grad_y)
        _, _, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=0.7)
        torch.testing.assert_close(dx, dx64, **tol)
    else:
        y, bits = functional.bitcodes(x, codebook, training=False, backend=native)
        (dc,) = torch.autograd.grad(y, (codebook,), grad_y)
        _, dc64 = decode_oracle(bits, codebook, grad_y)
    torch.testing.assert_close(dc, dc64, rtol=tol["rtol"], atol=tol["atol"] * dc64.abs().max().item())


def test_noise_matches_the_logistic_distribution(native):
    # With logit s and logistic noise, P(bit = 1) = sigmoid(s).
    codebook = torch.zeros(2, 1)
    codebook[1, 0] = 1.0
    x = torch.full((50000, 1), 1.3)
    _, bits = functional.bitcodes(x, codebook, training=True, backend=native)
    assert abs(bits.float().mean().item() - torch.sigmoid(torch.tensor(1.3)).item()) < 0.01


@pytest.mark.parametrize("training", [False, True])
def test_backward_is_bitwise_reproducible_across_thread_counts(native, training):
    x = torch.randn(1000, 40, requires_grad=True)
    codebook = torch.randn(2 * 12, 40, requires_grad=True)
    noise = torch.randn(1000, 12) if training else None
    grad_y = torch.randn(1000, 40)
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            y, _ = functional.bitcodes(x, codebook, training=training, noise=noise, backend=native)
            grads.append(torch.autograd.grad(y, (codebook,), grad_y)[0])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


def test_nan_rows_give_zero_bits(native):
    codebook = torch.randn(2 * 5, 8)
    x = torch.randn(4, 8)
    x[1, 3] = float("nan")
    for training in (False, True):
        noise = torch.randn(4, 5) if training else None
        _, bits = functional.bitcodes(x, codebook, training=training, noise=noise, backend=native)
        assert bits[1].eq(0).all()
        _, ref_bits = functional.bitcodes(x, codebook, training=training, noise=noise, backend="torch")
        assert torch.equal(bits, ref_bits)


def test_kernels_and_fallback_agree(native):
    x, codebook = torch.randn(3, 90, 20), torch.randn(2 * 10, 20)
    noise = tie_free_noise(x, codebook, dtype=torch.float32)
    for kwargs in (dict(training=False), dict(training=True, noise=noise)):
        y_native, bits_native = functional.bitcodes(x, codebook, backend="native", **kwargs)
        y_torch, bits_torch = functional.bitcodes(x, codebook, backend="torch", **kwargs)
        certify_bits(bits_native, x, codebook, accumulated_in=torch.float32, noise=kwargs.get("noise"))
        certify_bits(bits_torch, x, codebook, accumulated_in=torch.float32, noise=kwargs.get("noise"))
        # A near-tie may flip a bit in one of them: compare the tokens whose bits agree, most of them.
        same = (bits_native == bits_torch).all(-1, keepdim=True)
        assert same.float().mean() > 0.9
        if "noise" in kwargs:
            assert same.all()  # tie-free noise: no margin is within rounding of 0
        torch.testing.assert_close(torch.where(same, y_native, 0), torch.where(same, y_torch, 0))

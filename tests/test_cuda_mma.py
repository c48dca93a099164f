"""Route `mma` (bf16/fp16 forward and vq on the tensor cores) against the float64 oracle and
against route `cores`, forced with BITCODES_CUDA_ROUTE.

On the CUDA emulator these run the kernels on its mma.sync/ldmatrix/cp.async, which follow the
PTX ISA's fragment layouts (tests/test_cuda_emulator.py); that is exactly what they cover: the
kernels' logic and data movement, not the inline PTX that nvcc compiles in their place. Shapes
have partial tiles in every dimension (128 tokens, 64 bits / 128 codes, 32 and 64 features) and
several tiles in each.
"""

import pytest
import torch

from bitcodes_ext import functional, info, vq
from conftest import CUDA_EMULATOR, seed_cuda
from oracle import (
    DTYPES,
    LOW_PRECISION,
    MARGIN_RTOL,
    assert_within,
    certify_bits,
    certify_codes,
    check_vq_rule,
    close_tol,
    decode_oracle,
    exact_distances,
    make,
    margins,
    straight_through_bounds,
    sum_bound,
    tie_free_noise,
    train_oracle,
)

ops = torch.ops.bitcodes_ext
# (tokens, features, num_bits): one token, 1 bit; partial token tile, slice and n-tile (26 rows);
# exactly one chunk of 64 bits; two chunks; three token tiles, three chunks, a partial pass of y;
# the most bits route mma takes.
SHAPES = [(1, 8, 1), (130, 40, 13), (200, 64, 64), (97, 96, 65), (300, 264, 129), (40, 16, 512)]


@pytest.fixture
def route(monkeypatch):
    def force(name):
        monkeypatch.setenv("BITCODES_CUDA_ROUTE", name)

    return force


@pytest.mark.skipif(not CUDA_EMULATOR, reason="the route rule is read through the emulator's bitcodes_emu::route_for")
def test_route_rule(monkeypatch):
    def chosen(op, dtype, width=64, features=256):
        return torch.ops.bitcodes_emu.route_for(op, torch.empty(0, dtype=dtype), 1 << 20, width, features, False)

    monkeypatch.delenv("BITCODES_CUDA_ROUTE", raising=False)
    # auto never takes a route no GPU has run yet (route.h: trusted_for_auto)
    auto = {(op, dtype, width, features): chosen(op, dtype, width, features)
            for op in info.OPS for dtype in DTYPES
            for width, features in ((64, 256), (512, 256), (513, 256), (64, 100), (1 << 17, 256))}
    assert "mma" not in auto.values()
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", "mma")
    for dtype in LOW_PRECISION:
        assert chosen("forward", dtype) == chosen("vq", dtype, width=1 << 17) == "mma"
        assert chosen("forward", dtype, width=512) == "mma"
        # where mma does not apply, the forced route falls back to the rule
        assert chosen("forward", dtype, width=513) == auto[("forward", dtype, 513, 256)]
        assert chosen("forward", dtype, features=100) == auto[("forward", dtype, 64, 100)]
        for op in ("backward", "decode", "decode_backward"):
            assert chosen(op, dtype) == auto[(op, dtype, 64, 256)]
    for dtype in (torch.float32, torch.float64):
        assert chosen("forward", dtype) == auto[("forward", dtype, 64, 256)]
        assert chosen("vq", dtype) == auto[("vq", dtype, 64, 256)]
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", "tensorcores")
    with pytest.raises(ValueError, match="BITCODES_CUDA_ROUTE must be auto or the name of a route"):
        chosen("forward", torch.bfloat16)


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("tokens,features,num_bits", SHAPES)
def test_eval_matches_oracle(cuda, route, tokens, features, num_bits, dtype, metric):
    route("mma")
    x, codebook = make(tokens, features, num_bits, dtype)
    y, bits = functional.bitcodes(x.to(cuda), codebook.to(cuda), training=False, metric=metric, backend="native")
    assert y.dtype == dtype and bits.dtype == torch.int64
    bits = bits.cpu()
    certify_bits(bits, x, codebook, accumulated_in=torch.float32, metric=metric)
    assert_within(y.cpu(), decode_oracle(bits, codebook), sum_bound(bits, codebook, torch.float32), dtype)


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("tokens,features,num_bits", SHAPES[1:5])
def test_train_matches_oracle(cuda, route, tokens, features, num_bits, dtype, metric):
    route("mma")  # the forward; the backward has no mma kernel and runs on route cores
    x, codebook = make(tokens, features, num_bits, dtype)
    noise = tie_free_noise(x, codebook, metric, dtype=torch.float64)
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    xc, cc = x.to(cuda).requires_grad_(), codebook.to(cuda).requires_grad_()
    y, bits = functional.bitcodes(xc, cc, training=True, temperature=0.7, metric=metric, noise=noise.to(cuda), backend="native")
    dx, dc = torch.autograd.grad(y, (xc, cc), grad_y.to(cuda))
    y64, bits64, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=0.7, metric=metric)
    assert torch.equal(bits.cpu(), bits64)  # the noise keeps every margin far from a tie
    assert_within(y.cpu(), y64, sum_bound(bits64, codebook, torch.float32), dtype)
    dx_bound, dc_bound = straight_through_bounds(
        x, codebook, noise, grad_y, temperature=0.7, metric=metric, accumulated_in=torch.float32
    )
    for got, expected, bound in ((dx, dx64, dx_bound), (dc, dc64, dc_bound)):
        atol = close_tol(dtype)["atol"] * max(expected.abs().max().item(), 1.0)
        assert_within(got.cpu(), expected, bound + atol, dtype)


def forward_z(cuda, x, codebook, noise=None, metric="dot"):
    y, bits, z = ops.forward(x.to(cuda), codebook.to(cuda), None if noise is None else noise.to(cuda), 1.0, True,
                             metric == "euclidean")
    return y.cpu(), bits.cpu(), z.cpu()


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_routes_agree(cuda, route, dtype, metric):
    x, codebook = make(300, 72, 70, dtype)
    noise = torch.randn(300, 70)
    results = {}
    for name in ("cores", "mma"):
        route(name)
        results[name] = forward_z(cuda, x, codebook, noise, metric)
    (y0, bits0, z0), (y1, bits1, z1) = results["cores"], results["mma"]
    z64, scale = margins(x, codebook, metric, noise)
    # z from both routes is float-accurate: within float rounding of each other and of float64
    bound = 2 * MARGIN_RTOL[torch.float32] * scale
    assert ((z1.double() - z64).abs() <= bound).all() and ((z1.double() - z0.double()).abs() <= 2 * bound).all()
    differ = bits0 != bits1
    assert (z64.abs()[differ] <= bound[differ]).all()  # only near-ties may flip
    rows = ~differ.any(1)
    tol = close_tol(dtype)
    torch.testing.assert_close(y1[rows].double(), y0[rows].double(), rtol=tol["rtol"], atol=tol["atol"])


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_drawn_noise_is_the_same_stream_on_both_routes(cuda, route, dtype):
    # Every route draws logistic_noise4's stream: same seed, same noise, so z agrees to float rounding.
    x, codebook = make(200, 16, 37, dtype)
    results = {}
    for name in ("cores", "mma"):
        route(name)
        seed_cuda(7)
        results[name] = forward_z(cuda, x, codebook)
    z0, z1 = results["cores"][2], results["mma"][2]
    logits, scale = margins(x, codebook)
    assert ((z1.double() - z0.double()).abs() <= 2 * MARGIN_RTOL[torch.float32] * (scale + z0.double().abs())).all()
    assert (z1.double() - logits).std() > 1  # the noise is there (logistic: std 1.8), and the same on both


def test_drawn_noise_is_logistic(cuda, route):
    # With logit s and logistic noise, P(bit = 1) = sigmoid(s), for every bit position.
    route("mma")
    codebook = torch.zeros(2 * 8, 8, dtype=torch.bfloat16)
    codebook[1::2, 0] = 1.0
    x = torch.zeros(20000, 8, dtype=torch.bfloat16)
    x[:, 0] = 1.3
    _, bits = functional.bitcodes(x.to(cuda), codebook.to(cuda), training=True, backend="native")
    rate = bits.float().mean(0)
    assert (rate - torch.sigmoid(x[0, 0].float())).abs().max().item() < 0.015


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_zero_and_nan_rows_give_bit_0(cuda, route, dtype):
    route("mma")
    x, codebook = make(150, 24, 9, dtype)
    x[3] = 0
    x[140, 5] = float("nan")
    for training in (False, True):
        noise = torch.randn(150, 9).abs().neg() if training else None  # noise < 0: zero logits stay 0
        y, bits = functional.bitcodes(x.to(cuda), codebook.to(cuda), training=training,
                                      noise=None if noise is None else noise.to(cuda), backend="native")
        bits = bits.cpu()
        assert bits[3].eq(0).all() and bits[140].eq(0).all()
        assert_within(y.cpu(), decode_oracle(bits, codebook), sum_bound(bits, codebook, torch.float32), dtype)


def test_empty_input(cuda, route):
    route("mma")
    codebook = torch.randn(2 * 3, 8, dtype=torch.bfloat16, device=cuda)
    y, bits = functional.bitcodes(torch.empty(0, 8, dtype=torch.bfloat16, device=cuda), codebook, training=False)
    codes, dist = vq(torch.empty(2, 0, 8, dtype=torch.bfloat16, device=cuda), codebook)
    assert y.shape == (0, 8) and bits.shape == (0, 3) and codes.shape == dist.shape == (2, 0)


@pytest.mark.parametrize("training", [False, True])
def test_bitwise_reproducible(cuda, route, training):
    route("mma")
    x, codebook = make(260, 48, 70, torch.bfloat16)
    noise = torch.randn(260, 70).to(cuda) if training else None
    first, second = (ops.forward(x.to(cuda), codebook.to(cuda), noise, 1.0, training, False) for _ in range(2))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_opcheck_and_compile(cuda, route):
    route("mma")
    x = torch.randn(3, 70, 16, device=cuda, dtype=torch.bfloat16)
    codebook = torch.randn(2 * 6, 16, device=cuda, dtype=torch.bfloat16)
    noise = torch.randn(3, 70, 6, device=cuda)
    torch.library.opcheck(ops.forward, (x, codebook, None, 1.0, False, False))
    torch.library.opcheck(ops.forward, (x, codebook, noise, 0.5, True, True))
    torch.library.opcheck(ops.vq, (x, codebook))
    compiled = torch.compile(lambda x, c: functional.bitcodes(x, c, training=False), fullgraph=True)
    for a, b in zip(compiled(x, codebook), functional.bitcodes(x, codebook, training=False)):
        assert torch.equal(a, b)


def test_unaligned_input(cuda, route):
    # cp.async needs 16-byte aligned rows: a view that starts elsewhere is copied first.
    route("mma")
    x, codebook = make(101, 16, 5, torch.float16)
    flat = torch.cat([torch.zeros(1, dtype=x.dtype), x.reshape(-1)]).to(cuda)
    odd = flat[1:].reshape(101, 16)  # starts 2 bytes past a 16-byte boundary
    assert odd.data_ptr() % 16 != 0
    _, bits = functional.bitcodes(odd, codebook.to(cuda), training=False, backend="native")
    certify_bits(bits.cpu(), x, codebook, accumulated_in=torch.float32)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("n,k,d", [(1, 1, 8), (50, 7, 8), (333, 300, 24), (200, 129, 64), (130, 260, 256)])
def test_vq_matches_exact_search(cuda, route, n, k, d, dtype):
    route("mma")
    observations, codebook = torch.randn(n, d).to(dtype), torch.randn(k, d).to(dtype)
    codes, dist = vq(observations.to(cuda), codebook.to(cuda), backend="native")
    assert dist.dtype == dtype
    certify_codes(codes.cpu(), observations, codebook, rtol=2e-5)
    chosen = exact_distances(observations, codebook).gather(1, codes.cpu().reshape(-1, 1)).squeeze(1)
    torch.testing.assert_close(dist.cpu(), chosen.to(dtype))


def test_vq_ties_across_tiles_and_nan(cuda, route):
    route("mma")
    # Copies of code 3 in another lane (70), in the second tile of 128 codes (131) and in the third (259).
    codebook = torch.randn(300, 16).to(torch.bfloat16)
    codebook[70] = codebook[131] = codebook[259] = codebook[3]
    observations = torch.cat([codebook[3:4].float() + 1e-2, torch.full((1, 16), float("nan")), codebook[131:132].float()])
    codes, dist = vq(observations.to(torch.bfloat16).to(cuda), codebook.to(cuda))
    assert codes.tolist() == [3, 0, 3] and torch.isnan(dist[1]) and dist[2] == 0


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_vq_adversarial_ties_and_nan(cuda, route, dtype):
    # The case of tests/test_vq.py's test_adversarial_ties_and_nan, on route mma (features % 8 == 0).
    route("mma")
    check_vq_rule(lambda o, c: vq(o.to(cuda), c.to(cuda), backend="native"), dtype)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_vq_routes_agree(cuda, route, dtype):
    observations, codebook = torch.randn(300, 40).to(dtype), torch.randn(200, 40).to(dtype)
    results = {}
    for name in ("cores", "mma"):
        route(name)
        results[name] = [t.cpu() for t in vq(observations.to(cuda), codebook.to(cuda), backend="native")]
    (c0, d0), (c1, d1) = results["cores"], results["mma"]
    certify_codes(c1, observations, codebook, rtol=2e-5)
    same = c0 == c1
    assert same.float().mean() > 0.99
    torch.testing.assert_close(d1[same], d0[same])  # the same code: its distance in double, rounded to dtype

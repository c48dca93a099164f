"""The CUDA routes (csrc/cuda/route.h) against each other: every op reaches each route, the
routes agree up to certified rounding, and they draw the same training noise from one seed.
Skipped without a GPU; run on the CUDA emulator in CI, as test_cuda_bitcodes.py explains."""

import pytest
import torch

from bitcodes_ext import functional, info, vq
from oracle import (
    DTYPES,
    MARGIN_RTOL,
    acc_dtype,
    assert_within,
    certify_codes,
    close_tol,
    make,
    margins,
    sum_bound,
    tie_free_noise,
)
from conftest import CUDA_ROUTES, seed_cuda

ops = torch.ops.bitcodes_ext


def on_route(monkeypatch, variant, fn):
    """fn() on a CUDA_ROUTES variant ("cores", "gemm", "gemm-chunked", or a bare route name)."""
    env = {"BITCODES_CUDA_ROUTE": variant.split("-")[0], **CUDA_ROUTES.get(variant, {})}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        return fn()
    finally:
        for name in env:
            monkeypatch.delenv(name)


def test_every_route_is_tested(cuda):
    # route mma has its own tests (tests/test_cuda_mma.py): its kernels cover the forward and vq only
    assert {variant.split("-")[0] for variant in CUDA_ROUTES} | {"mma"} == set(info.cuda_routes())


def every_op(cuda):
    x = torch.randn(70, 12, device=cuda)
    codebook = torch.randn(2 * 5, 12, device=cuda)
    noise = torch.randn(70, 5, device=cuda)
    _, bits, z = ops.forward(x, codebook, noise, 1.0, True, False)
    return {
        "forward": lambda: ops.forward(x, codebook, None, 1.0, False, False),
        "backward": lambda: ops.backward(torch.randn_like(x), x, codebook, z, 1.0, False),
        "decode": lambda: ops.decode(bits, codebook),
        "decode_backward": lambda: ops.decode_backward(torch.randn_like(x), bits.bool(), codebook),
        "vq": lambda: ops.vq(x, codebook),
    }


@pytest.mark.parametrize("op", info.OPS)
def test_every_op_reaches_route_gemm(cuda, monkeypatch, op):
    # Route gemm reads BITCODES_CUDA_CHUNK_TOKENS, the CUDA-core route does not: a bad value fails
    # exactly where the op took route gemm.
    call = every_op(cuda)[op]
    monkeypatch.setenv("BITCODES_CUDA_CHUNK_TOKENS", "0")
    on_route(monkeypatch, "cores", call)
    with pytest.raises(ValueError, match="BITCODES_CUDA_CHUNK_TOKENS"):
        on_route(monkeypatch, "gemm", call)


def test_unknown_route_is_a_clear_error(cuda, monkeypatch):
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", "tensor-cores")
    with pytest.raises(ValueError, match="BITCODES_CUDA_ROUTE must be auto or the name of a route"):
        every_op(cuda)


def differing_bits_are_near_ties(a, b, x, codebook, dtype, metric="dot", noise=None):
    z, scale = margins(x, codebook, metric, noise)
    differ = a.cpu().long() != b.cpu().long()
    assert (z.abs()[differ] <= 2 * MARGIN_RTOL[acc_dtype(dtype)] * scale[differ]).all()
    return differ


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_routes_agree_in_eval(cuda, monkeypatch, dtype, metric):
    # Bits may differ only at near-ties; a token whose bits agree has the same y up to twice
    # the rounding each route is allowed against the oracle.
    x, codebook = make(500, 48, 37, dtype)
    run = lambda: functional.bitcodes(x.to(cuda), codebook.to(cuda), training=False, metric=metric, backend="native")
    results = {route: [t.cpu() for t in on_route(monkeypatch, route, run)] for route in CUDA_ROUTES}
    (y0, bits0), *others = results.values()
    tol = close_tol(dtype)
    for y, bits in others:
        same = ~differing_bits_are_near_ties(bits, bits0, x, codebook, dtype, metric).any(1)
        bound = 2 * (sum_bound(bits0, codebook, acc_dtype(dtype)) + tol["atol"]) + tol["rtol"] * y0.double().abs()
        assert_within(y[same], y0[same].double(), bound[same], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_routes_agree_in_training(cuda, monkeypatch, dtype):
    x, codebook = make(300, 40, 21, dtype)
    noise = tie_free_noise(x, codebook, dtype=torch.float64)
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    results = {}
    for route in CUDA_ROUTES:
        def run():
            xc, cc = x.to(cuda).requires_grad_(), codebook.to(cuda).requires_grad_()
            y, bits = functional.bitcodes(xc, cc, training=True, temperature=0.6, noise=noise.to(cuda), backend="native")
            dx, dc = torch.autograd.grad(y, (xc, cc), grad_y.to(cuda))
            return [t.cpu() for t in (y, bits, dx, dc)]
        results[route] = on_route(monkeypatch, route, run)
    (y0, bits0, dx0, dc0), *others = results.values()
    tol = close_tol(dtype)
    for y, bits, dx, dc in others:
        assert torch.equal(bits, bits0)  # the noise keeps every margin far from a tie
        for a, b in ((y, y0), (dx, dx0), (dc, dc0)):
            torch.testing.assert_close(a.double(), b.double(), rtol=tol["rtol"], atol=tol["atol"] * max(b.abs().max().item(), 1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_routes_draw_the_same_noise(cuda, monkeypatch, dtype):
    # The same seed gives the same training step on every route: z = logit + noise differs only
    # by the logit's rounding (a different stream would move it by O(1)), and so do the bits.
    x, codebook = make(400, 32, 23, dtype)
    results = {}
    for route in CUDA_ROUTES:
        def run():
            seed_cuda(11)
            _, bits, z = ops.forward(x.to(cuda), codebook.to(cuda), None, 1.0, True, False)
            return bits.cpu(), z.cpu()
        results[route] = on_route(monkeypatch, route, run)
    (bits0, z0), *others = results.values()
    _, scale = margins(x, codebook)
    bound = 2 * MARGIN_RTOL[acc_dtype(dtype)] * (scale + z0.double().abs())
    for bits, z in others:
        assert ((z.double() - z0.double()).abs() <= bound).all()
        differ = bits != bits0
        assert (z0.double().abs()[differ] <= bound[differ]).all()
    seed_cuda(12)
    _, _, z_other = ops.forward(x.to(cuda), codebook.to(cuda), None, 1.0, True, False)
    assert not torch.allclose(z_other.cpu(), z0)  # another seed, other noise


@pytest.mark.parametrize("dtype", DTYPES)
def test_vq_routes_agree(cuda, monkeypatch, dtype):
    observations, codebook = torch.randn(600, 20).to(dtype), torch.randn(300, 20).to(dtype)
    results = {route: on_route(monkeypatch, route, lambda: vq(observations.to(cuda), codebook.to(cuda), backend="native"))
               for route in CUDA_ROUTES}
    (codes0, dist0), *others = results.values()
    rtol = 1e-12 if dtype == torch.float64 else 2e-5
    for codes, dist in others:
        certify_codes(codes.cpu(), observations, codebook, rtol=rtol)
        same = codes.cpu() == codes0.cpu()
        torch.testing.assert_close(dist.cpu()[same], dist0.cpu()[same])

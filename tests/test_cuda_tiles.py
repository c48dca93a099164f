"""The tiles of the CUDA-core kernels (csrc/cuda/tile_gemm.cuh): every column width the kernels
are compiled for (16, 32, 64, and several tiles of 64) against the float64 oracle, feature
counts that are not whole vectors or tiles, misaligned inputs (the 16-byte loads fall back to
scalar ones), the fused forward against the split one, and the training noise against an
independent Philox. Skipped without a GPU; run on the CUDA emulator in CI, which aborts on a
misaligned vector access as a GPU would fault (tools/cuda_emulator/build.py).

Every test here runs on route cores (BITCODES_CUDA_ROUTE=cores), whose tiles these are. Left to
choose, the ops send bf16 and some float32 problems to route gemm, whose cuBLAS GEMMs pick
their kernels by the number of rows and by the inputs' alignment, so the padded batch of the
fused path and a misaligned copy legitimately round differently there (seen on an H200,
2026-12-04); route gemm is held to the float64 oracle instead (test_cuda_bitcodes.py,
test_cuda_routes.py).
"""


import pytest
import torch

from bitcodes_ext import functional
from conftest import CUDA_EMULATOR, seed_cuda
from oracle import (
    DTYPES,
    acc_dtype,
    assert_within,
    certify_bits,
    close_tol,
    make,
    philox_logistic_noise,
    straight_through_bounds,
    sum_bound,
    tie_free_noise,
    train_oracle,
)

ops = torch.ops.bitcodes_ext


@pytest.fixture(autouse=True)
def _route_cores(monkeypatch):
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", "cores")

# Around each column width: 1 bit, one short of a tile, a whole tile, one past it.
WIDTHS = [1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129]


# The forward runs fused (one kernel) when its token tiles fill every SM and the bits fit its
# mask (<= 64), else split (bits over token x bit tiles, then y from the packed bits over
# token x feature tiles). The emulator reports the SM count tests give it; on a GPU, a batch
# padded to 2^17 tokens fills any GPU (512 or more tiles) and a few hundred tokens fill none.
FILLS_ANY_GPU = 1 << 17


def forward_on_path(path, x, codebook, noise, temperature, training, euclidean=False):
    """ops.forward on the fused or the split path."""
    if CUDA_EMULATOR:
        torch.ops.bitcodes_emu.set_sm_count(1 if path == "fused" else 1 << 30)
        try:
            return ops.forward(x, codebook, noise, temperature, training, euclidean)
        finally:
            torch.ops.bitcodes_emu.set_sm_count(1)
    if path == "split":
        return ops.forward(x, codebook, noise, temperature, training, euclidean)
    n = x.shape[0]
    x = torch.cat([x, x.new_zeros(FILLS_ANY_GPU, x.shape[1])])
    if noise is not None:
        noise = torch.cat([noise, noise.new_zeros(FILLS_ANY_GPU, noise.shape[1])])
    y, bits, z = ops.forward(x, codebook, noise, temperature, training, euclidean)
    return y[:n], bits[:n], z[:n] if training else z


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("features", [3, 68, 72])
@pytest.mark.parametrize("num_bits", WIDTHS)
def test_every_width_matches_oracle(cuda, num_bits, features, dtype):
    # 300 tokens: partial token tiles of 64, 128 and 256 rows. Features: 3, less than one 16-byte
    # vector (scalar loads only); 68, whole vectors of float and double but not of bf16/fp16, and
    # not whole slices of 8 or 16 nor whole tiles (the 16-byte loads run, then the last slice
    # takes the bounds-checked ones); 72, the same for bf16/fp16 in slices of 16.
    x, codebook = make(300, features, num_bits, dtype)
    y, bits = functional.bitcodes(x.to(cuda), codebook.to(cuda), training=False, backend="native")
    certify_bits(bits.cpu(), x, codebook, accumulated_in=acc_dtype(dtype))
    noise = tie_free_noise(x, codebook, dtype=torch.float64)
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    xc, cc = x.to(cuda).requires_grad_(), codebook.to(cuda).requires_grad_()
    y, bits = functional.bitcodes(xc, cc, training=True, temperature=0.7, noise=noise.to(cuda), backend="native")
    dx, dc = torch.autograd.grad(y, (xc, cc), grad_y.to(cuda))
    y64, bits64, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=0.7)
    assert torch.equal(bits.cpu(), bits64)
    assert_within(y.cpu(), y64, sum_bound(bits64, codebook, acc_dtype(dtype)), dtype)
    dx_bound, dc_bound = straight_through_bounds(
        x, codebook, noise, grad_y, temperature=0.7, metric="dot", accumulated_in=acc_dtype(dtype)
    )
    for got, expected, bound in ((dx, dx64, dx_bound), (dc, dc64, dc_bound)):
        atol = close_tol(dtype)["atol"] * max(expected.abs().max().item(), 1.0)
        assert_within(got.cpu(), expected, bound + atol, dtype)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("num_bits", [b for b in WIDTHS if b <= 64])
def test_fused_and_split_forward_agree(cuda, num_bits, dtype, training):
    # Same arithmetic in the same order on both paths: equal bit for bit, drawn noise included.
    x, codebook = make(300, 70, num_bits, dtype)
    x, codebook = x.to(cuda), codebook.to(cuda)
    results = {}
    for path in ("fused", "split"):
        seed_cuda(5)
        results[path] = forward_on_path(path, x, codebook, None, 0.5, training)
    for fused, split in zip(results["fused"], results["split"]):
        assert torch.equal(fused, split)


@pytest.mark.parametrize("path", ["fused", "split"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_width_does_not_change_the_arithmetic(cuda, dtype, path):
    # Every margin is one fma chain over the features in order, whatever the tile: the first 16
    # bits' margins are the same bit for bit whether they sit in a tile of 16, 32 or 64 or
    # in the first of two tiles of 64.
    x, codebook = make(300, 70, 65, dtype)
    noise = torch.randn(300, 65, dtype=dtype)
    x, codebook, noise = x.to(cuda), codebook.to(cuda), noise.to(cuda)
    margins = []
    for num_bits in (16, 17, 33, 65):  # 65 bits take the split path whatever the batch
        _, bits, z = forward_on_path(path, x, codebook[: 2 * num_bits], noise[:, :num_bits].contiguous(), 1.0, True)
        margins.append((z[:, :16], bits[:, :16]))
    for z, bits in margins[1:]:
        assert torch.equal(z, margins[0][0]) and torch.equal(bits, margins[0][1])


def misaligned(t):
    """A contiguous copy of t whose data starts one element past a 16-byte boundary."""
    storage = torch.empty(t.numel() + 16, dtype=t.dtype, device=t.device)
    view = storage[1 : 1 + t.numel()].view(t.shape)
    view.copy_(t)
    assert view.is_contiguous() and view.data_ptr() % 16 != 0
    return view


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("num_bits", [16, 32, 64])
def test_misaligned_inputs_match_aligned(cuda, num_bits, dtype):
    # Rows of 64 features and 16-64 bits are whole 16-byte vectors, so only the base addresses
    # (storage offset 1) stop the vector loads; what our kernels compute must not change at all.
    # The codebook gradients' sum of g over tokens is ATen's reduction, whose order follows the
    # input's alignment (on an H200, float32 grad_y.sum(0) differs by an ulp once misaligned):
    # those two outputs are held to that sum's rounding bound instead.
    x, codebook = make(300, 64, num_bits, dtype)
    x, codebook = x.to(cuda), codebook.to(cuda)
    noise = torch.randn(300, num_bits, device=cuda, dtype=acc_dtype(dtype))
    grad_y = torch.randn(300, 64, device=cuda).to(dtype)
    observations = torch.randn(300, 64, device=cuda).to(dtype)

    bytes_ = ops.forward(x, codebook, None, 1.0, False, False)[1].to(torch.uint8)

    def run(shift):
        xs, cs, ns, gs, os_, bs = (shift(t) for t in (x, codebook, noise, grad_y, observations, bytes_))
        outs = [*ops.forward(xs, cs, None, 1.0, False, False)]
        train = ops.forward(xs, cs, ns, 0.5, True, True)
        outs += [*train, *ops.backward(gs, xs, cs, shift(train[2]), 0.5, True)]
        return outs + [ops.decode(bs, cs), ops.decode_backward(gs, bs, cs), *ops.vq(os_, cs)]

    aten_sum_bound = 2 * 300 * torch.finfo(acc_dtype(dtype)).eps * grad_y.double().abs().sum(0).max()
    outputs = zip(run(lambda t: t), run(misaligned))
    for index, (a, b) in enumerate(outputs):
        if index in (7, 9):  # backward's dcodebook, decode_backward's: sum(g) - sum(bits g) for even codes
            assert (a.double() - b.double()).abs().max() <= aten_sum_bound
        else:
            assert torch.equal(a, b), index


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("num_bits,path", [(13, "fused"), (13, "split"), (64, "fused"), (64, "split"), (70, "split")])
def test_drawn_noise_is_the_philox_stream(cuda, num_bits, path, dtype):
    # With x = 0 the margin is the noise itself: bit j of token t must be logistic_noise's
    # number for (seed, offset 0, t, j), whichever thread, tile or path drew it.
    x = torch.zeros(300, 5, dtype=dtype, device=cuda)
    codebook = torch.randn(2 * num_bits, 5, device=cuda).to(dtype)
    seed_cuda(1234)
    _, bits, z = forward_on_path(path, x, codebook, None, 1.0, True)
    expected = philox_logistic_noise(1234, 0, 300, num_bits, dtype=acc_dtype(dtype))
    assert z.dtype == expected.dtype
    tol = dict(rtol=1e-14, atol=1e-14) if dtype == torch.float64 else dict(rtol=2e-6, atol=1e-7)
    torch.testing.assert_close(z.cpu(), expected, **tol)
    assert torch.equal(bits.cpu(), (z.cpu() > 0).long())

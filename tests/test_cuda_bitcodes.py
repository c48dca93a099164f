"""The CUDA kernels of the Bitcodes ops against the float64 oracle and the CPU kernels.

Skipped without a GPU (the `cuda` fixture). CI, which has no GPU, checks that the CUDA kernels
were built (test_build.py) and runs these tests against the same CUDA sources on a CPU
emulation of CUDA (tools/cuda_emulator), leaving out those marked `real_gpu`. Every test runs on
every CUDA route (the `cuda_route` fixture); tests/test_cuda_routes.py compares the routes.
"""

import pytest
import torch

from bitcodes_ext import Bitcodes, functional, reference
from oracle import (
    DTYPES,
    acc_dtype,
    assert_within,
    backward_oracle,
    cancelling_noise,
    certify_bits,
    close_tol,
    decode_oracle,
    integer_case,
    make,
    margins,
    straight_through_bounds,
    sum_bound,
    tie_free_noise,
    train_oracle,
)

ops = torch.ops.bitcodes_ext
pytestmark = pytest.mark.usefixtures("cuda_route")
# (tokens, features, num_bits): partial tiles in every dimension, several bit tiles, and many
# bit tiles and partial sums of 64 pairs (4064, 5200 bits; more than 64 bits take the split
# forward: the bits, then y from the packed bits in a second kernel).
SHAPES = [(3, 5, 1), (130, 33, 13), (200, 64, 64), (97, 100, 65), (300, 256, 129), (64, 1024, 1024)]
MANY_BITS = [(70, 8, 4064), (70, 8, 5200)]


def grad_tol(dtype, expected):
    tol = close_tol(dtype)
    return dict(rtol=tol["rtol"], atol=tol["atol"] * max(expected.abs().max().item(), 1.0))


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,features,num_bits", SHAPES + MANY_BITS)
def test_eval_matches_oracle(cuda, tokens, features, num_bits, dtype, metric):
    x, codebook = make(tokens, features, num_bits, dtype)
    y, bits = functional.bitcodes(x.to(cuda), codebook.to(cuda), training=False, metric=metric, backend="native")
    assert y.device.type == cuda.type and y.dtype == dtype and bits.dtype == torch.int64
    bits = bits.cpu()
    certify_bits(bits, x, codebook, accumulated_in=acc_dtype(dtype), metric=metric)
    assert_within(y.cpu(), decode_oracle(bits, codebook), sum_bound(bits, codebook, acc_dtype(dtype)), dtype)


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,features,num_bits", SHAPES)
def test_train_matches_oracle(cuda, tokens, features, num_bits, dtype, metric):
    x, codebook = make(tokens, features, num_bits, dtype)
    noise = tie_free_noise(x, codebook, metric, dtype=torch.float64)
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    xc, cc = x.to(cuda).requires_grad_(), codebook.to(cuda).requires_grad_()
    y, bits = functional.bitcodes(xc, cc, training=True, temperature=0.7, metric=metric, noise=noise.to(cuda), backend="native")
    dx, dc = torch.autograd.grad(y, (xc, cc), grad_y.to(cuda))
    y64, bits64, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=0.7, metric=metric)
    assert torch.equal(bits.cpu(), bits64)  # the noise keeps every margin far from a tie
    assert_within(y.cpu(), y64, sum_bound(bits64, codebook, acc_dtype(dtype)), dtype)
    dx_bound, dc_bound = straight_through_bounds(
        x, codebook, noise, grad_y, temperature=0.7, metric=metric, accumulated_in=acc_dtype(dtype)
    )
    tol = grad_tol(dtype, dx64)
    assert_within(dx.cpu(), dx64, dx_bound + tol["atol"], dtype)
    tol = grad_tol(dtype, dc64)
    assert_within(dc.cpu(), dc64, dc_bound + tol["atol"], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eval_codebook_gradient_matches_oracle(cuda, dtype):
    x, codebook = make(5000, 40, 70, dtype)  # several token chunks in the two-stage reduction
    cc = codebook.to(cuda).requires_grad_()
    y, bits = functional.bitcodes(x.to(cuda), cc, training=False, backend="native")
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    (dc,) = torch.autograd.grad(y, (cc,), grad_y.to(cuda))
    _, dc64 = decode_oracle(bits.cpu(), codebook, grad_y)
    torch.testing.assert_close(dc.cpu().double(), dc64, **grad_tol(dtype, dc64))


@pytest.mark.real_gpu
@pytest.mark.parametrize("training", [False, True])
def test_cuda_and_cpu_kernels_agree(cuda, training):
    x, codebook = make(1000, 48, 24, torch.float32)
    noise = tie_free_noise(x, codebook, dtype=torch.float32) if training else None
    grad_y = torch.randn(x.shape)
    results = {}
    for device in ("cpu", cuda):
        xd, cd = x.to(device).requires_grad_(), codebook.to(device).requires_grad_()
        y, bits = functional.bitcodes(xd, cd, training=training, noise=None if noise is None else noise.to(device), backend="native")
        grads = torch.autograd.grad(y, (cd, xd) if training else (cd,), grad_y.to(device))
        results[str(device)] = [t.cpu() for t in (y, bits, *grads)]
    cpu, gpu = results["cpu"], results[str(cuda)]
    for bits in (cpu[1], gpu[1]):
        certify_bits(bits, x, codebook, accumulated_in=torch.float32, noise=noise)
    # A near-tie may flip a bit on one device only: compare the tokens whose bits agree, most of them.
    same = (cpu[1] == gpu[1]).all(-1, keepdim=True)
    assert same.float().mean() > 0.99
    torch.testing.assert_close(torch.where(same, gpu[0], 0), torch.where(same, cpu[0], 0), rtol=1e-5, atol=1e-4)
    if training:  # tie-free noise: every bit agrees, and so must the gradients
        assert same.all()
        for a, b in zip(cpu[2:], gpu[2:]):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4)
    else:  # the codebook gradient sums over every token: each device's against the oracle from its own bits
        for result in (cpu, gpu):
            _, dc64 = decode_oracle(result[1], codebook, grad_y)
            torch.testing.assert_close(result[2].double(), dc64, **grad_tol(torch.float32, dc64))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("bits_dtype", [torch.int64, torch.uint8, torch.bool])
def test_from_bits_reproduces_y(cuda, training, bits_dtype):
    layer = Bitcodes(19, 11, temperature=0.5).to(cuda).train(training)
    y, bits = layer(torch.randn(300, 19, device=cuda))
    assert torch.equal(layer.from_bits(bits.to(bits_dtype)), y)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("bits_dtype", [torch.uint8, torch.bool])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bits_dtype(cuda, training, bits_dtype, dtype):
    x, codebook = make(300, 24, 19, dtype)
    noise = tie_free_noise(x, codebook, dtype=torch.float32).to(cuda) if training else None
    x, codebook = x.to(cuda), codebook.to(cuda)
    y, bits = functional.bitcodes(x, codebook, training=training, noise=noise, backend="native", bits_dtype=bits_dtype)
    y_long, bits_long = functional.bitcodes(x, codebook, training=training, noise=noise, backend="native")
    assert bits.dtype == bits_dtype and bits_long.dtype == torch.int64
    assert torch.equal(bits.long(), bits_long) and torch.equal(y, y_long)
    layer = Bitcodes(24, 19, bits_dtype=bits_dtype).to(cuda, dtype).train(training)
    xg = x.clone().requires_grad_()
    y, bits = layer(xg, noise)
    assert bits.dtype == bits_dtype and torch.equal(layer.from_bits(bits), y)
    y.sum().backward()  # the eval backward reads the saved bits in this dtype
    assert layer.codebook.grad is not None


def test_from_bits_rejects_values_other_than_0_and_1(cuda):
    codebook = torch.randn(2 * 3, 4, device=cuda)
    with pytest.raises(ValueError, match="only 0 and 1"):
        ops.decode(torch.tensor([[0, 2, 1]], device=cuda), codebook)


@pytest.mark.real_gpu
def test_seed_reproduces_a_training_step(cuda):
    layer = Bitcodes(32, 16).to(cuda).train()
    x = torch.randn(4096, 32, device=cuda)
    torch.manual_seed(7)
    y1, bits1 = layer(x)
    torch.manual_seed(7)
    y2, bits2 = layer(x)
    _, bits3 = layer(x)
    assert torch.equal(bits1, bits2) and torch.equal(y1, y2)
    assert not torch.equal(bits1, bits3)  # the generator advanced


def test_drawn_noise_is_logistic(cuda):
    # With logit s and logistic noise, P(bit = 1) = sigmoid(s), for every bit position.
    codebook = torch.zeros(2 * 8, 1, device=cuda)
    codebook[1::2, 0] = 1.0
    x = torch.full((50000, 1), 1.3, device=cuda)
    _, bits = functional.bitcodes(x, codebook, training=True, backend="native")
    rate = bits.float().mean(0)
    assert (rate - torch.sigmoid(torch.tensor(1.3))).abs().max().item() < 0.01


@pytest.mark.parametrize("training", [False, True])
def test_backward_is_bitwise_reproducible(cuda, training):
    x, codebook = make(3000, 40, 12, torch.float32)
    xc, cc = x.to(cuda).requires_grad_(), codebook.to(cuda).requires_grad_()
    noise = torch.randn(3000, 12, device=cuda) if training else None
    grad_y = torch.randn(3000, 40, device=cuda)
    grads = []
    for _ in range(2):
        y, _ = functional.bitcodes(xc, cc, training=training, noise=noise, backend="native")
        grads.append(torch.autograd.grad(y, (cc,), grad_y)[0])
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_zero_margins_give_bit_0(cuda, dtype, metric, training):
    # tests/test_ties.py's cases on the CUDA kernels: zero tokens, equal pairs, x orthogonal to a
    # pair, and training noise that cancels the margin exactly; the bit is 0 in the forward and in
    # the backward's codebook sums. Small integers: every margin and sum is exact.
    x, codebook = integer_case(150, 12, 19, dtype)
    noise = cancelling_noise(x, codebook, metric) if training else None
    z = reference.pair_logits(x.double(), codebook.double(), metric) + (noise if training else 0)
    assert (z == 0).float().mean() > 0.3 and (z > 0).any()
    xc, cc = x.clone().to(cuda).requires_grad_(training), codebook.clone().to(cuda).requires_grad_()
    y, bits = functional.bitcodes(xc, cc, training=training, temperature=0.5, metric=metric,
                                  noise=noise.to(cuda) if training else None, backend="native")
    assert torch.equal(bits.cpu(), (z > 0).long())
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    if training:
        dx, dc = torch.autograd.grad(y, (xc, cc), grad_y.to(cuda))
        y64, _, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=0.5, metric=metric)
        torch.testing.assert_close(y.cpu(), y64.to(dtype), **close_tol(dtype))
        torch.testing.assert_close(dx.cpu().double(), dx64, **grad_tol(dtype, dx64))
    else:
        (dc,) = torch.autograd.grad(y, (cc,), grad_y.to(cuda))
        y64, dc64 = decode_oracle(bits.cpu(), codebook, grad_y)
        assert torch.equal(y.cpu(), y64.to(dtype))  # sums of small integers: exact
        assert torch.equal(functional.decode(bits, cc.detach(), backend="native").cpu(), y.cpu())
    torch.testing.assert_close(dc.cpu().double(), dc64, **grad_tol(dtype, dc64))


def test_drawn_noise_differs_across_tokens_and_bits(cuda):
    # With x = 0, z is the drawn noise: token t reads its own Philox subsequence, so no two tokens
    # (in one tile of 64 or in two) and no two bits of a token share their numbers.
    codebook = torch.randn(2 * 6, 4, device=cuda)
    z = ops.forward(torch.zeros(300, 4, device=cuda), codebook, None, 1.0, True, False)[2].cpu()
    assert torch.unique(z, dim=0).shape[0] == z.shape[0]
    assert torch.unique(z.T, dim=0).shape[0] == z.shape[1]


def test_nan_rows_give_zero_bits(cuda):
    codebook = torch.randn(2 * 5, 8, device=cuda)
    x = torch.randn(4, 8, device=cuda)
    x[1, 3] = float("nan")
    for training in (False, True):
        noise = torch.randn(4, 5, device=cuda) if training else None
        _, bits = functional.bitcodes(x, codebook, training=training, noise=noise, backend="native")
        assert bits[1].eq(0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_logits_give_zero_bits(cuda, dtype):
    # A zero token has every logit exactly 0, a tie, which gives bit 0 as the reference's argmax
    # does; zero noise keeps z at 0 in training.
    x, codebook = make(5, 16, 9, dtype)
    x[2] = 0
    for training in (False, True):
        noise = torch.zeros(5, 9, device=cuda) if training else None
        _, bits = functional.bitcodes(x.to(cuda), codebook.to(cuda), training=training, noise=noise, backend="native")
        assert bits[2].eq(0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_backward_where_r_is_past_fp16_range(cuda, dtype):
    # One bit with w = c[1] - c[0] = +-2^-10, a zero x (z = 0, p = 1/2) and g = 4096 sign(w):
    # u = 128 * 4 = 512 and r = p(1 - p) u / tau = 128000 at tau = 1e-3, past fp16's 65504, while
    # dx = r w = +-125 and the codebook gradient are not: an fp16 r must be scaled before use.
    features = 128
    w = torch.full((features,), 2.0**-10, dtype=torch.float64)
    w[::2] *= -1
    codebook = torch.stack([-w / 2, w / 2]).to(dtype)
    x = torch.zeros(3, features, dtype=dtype)
    grad_y = (4096 * torch.sign(w)).expand(3, features).to(dtype)
    noise = torch.zeros(3, 1, dtype=torch.float64)
    xc, cc = x.to(cuda).requires_grad_(), codebook.to(cuda).requires_grad_()
    y, bits = functional.bitcodes(xc, cc, training=True, temperature=1e-3, noise=noise.to(cuda), backend="native")
    dx, dc = torch.autograd.grad(y, (xc, cc), grad_y.to(cuda))
    _, bits64, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=1e-3)
    assert torch.equal(bits.cpu(), bits64) and dx64.abs().max() == 125
    torch.testing.assert_close(dx.cpu().double(), dx64, **grad_tol(dtype, dx64))
    torch.testing.assert_close(dc.cpu().double(), dc64, **grad_tol(dtype, dc64))


# Half an ulp, relative: a value rounded once into the dtype is within this of the exact one.
HALF_ULP = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


# The unit roundoff of each accumulation dtype.
UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24}


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_rounds_once(cuda, dtype, metric):
    # Tighter than the parity tests, with z given exactly: dx and the codebook gradient must be
    # the float64 gradient for that z rounded once into the output dtype, up to float32-level
    # error (n + 8 unit roundoffs of the sum of n terms' magnitudes, and r's own rounding; see
    # backward_oracle). An r rounded to bf16 or fp16 alone (no lo part) errs by 2^-9 or 2^-12 of
    # each term, past that.
    tokens, features, num_bits = 64, 48, 24
    x, codebook = make(tokens, features, num_bits, dtype)
    noise = tie_free_noise(x, codebook, metric, dtype=torch.float64)
    z = (margins(x, codebook, metric, noise)[0]).to(acc_dtype(dtype))
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    dx, dc = ops.backward(grad_y.to(cuda), x.to(cuda), codebook.to(cuda), z.to(cuda), 0.7, metric == "euclidean")
    dx64, dc64, sums, r_error = backward_oracle(grad_y, x, codebook, z, temperature=0.7, metric=metric)
    u = UNIT_ROUNDOFF[acc_dtype(dtype)]
    for got, exact, terms, carried, n in zip((dx, dc), (dx64, dc64), sums, r_error, (4 * num_bits, tokens)):
        bound = HALF_ULP[dtype] * exact.abs() + u * ((n + 8) * terms + carried) + 1e-30
        excess = (got.cpu().double() - exact).abs() - bound
        assert (excess <= 0).all(), f"{int((excess > 0).sum())} of {excess.numel()} past the bound, worst {excess.max():.3g}"


@pytest.mark.real_gpu
def test_cuda_graph_capture_and_replay(cuda):
    layer = Bitcodes(64, 16).to(cuda)
    x = torch.randn(512, 64, device=cuda)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the graph, as capture requires
        for training in (False, True):
            layer.train(training)(x)
    torch.cuda.current_stream().wait_stream(side)

    layer.eval()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y, bits = layer(x)
    graph.replay()
    y_eager, bits_eager = layer(x)
    assert torch.equal(bits, bits_eager) and torch.equal(y, y_eager)

    layer.train()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y, bits = layer(x)
    graph.replay()
    y1, bits1 = y.clone(), bits.clone()
    graph.replay()
    assert not torch.equal(bits1, bits)  # each replay draws fresh noise
    assert torch.equal(layer.from_bits(bits1), y1) and torch.equal(layer.from_bits(bits), y)


@pytest.mark.real_gpu
@pytest.mark.parametrize("training", [False, True])
def test_cuda_graph_captures_forward_and_backward(cuda, training):
    layer = Bitcodes(32, 8).to(cuda).train(training)
    x = torch.randn(256, 32, device=cuda, requires_grad=True)
    grad_y = torch.randn(256, 32, device=cuda)
    noise = torch.randn(256, 8, device=cuda) if training else None

    def step():
        y, _ = layer(x, noise)
        return torch.autograd.grad(y, (layer.codebook,), grad_y)[0]

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # fails if any op syncs with the host
        grad = step()
    graph.replay()
    assert torch.equal(grad, step())


@pytest.mark.parametrize("euclidean", [False, True])
def test_opcheck(cuda, euclidean):
    x = torch.randn(3, 70, 10, device=cuda, requires_grad=True)
    codebook = torch.randn(2 * 6, 10, device=cuda, requires_grad=True)
    noise = torch.randn(3, 70, 6, device=cuda)
    torch.library.opcheck(ops.forward, (x, codebook, None, 1.0, False, euclidean))
    torch.library.opcheck(ops.forward, (x, codebook, noise, 0.5, True, euclidean))
    _, bits, z = ops.forward(x.detach(), codebook.detach(), noise, 0.5, True, euclidean)
    grad_y = torch.randn_like(x.detach())
    torch.library.opcheck(ops.backward, (grad_y, x.detach(), codebook.detach(), z, 0.5, euclidean))
    torch.library.opcheck(ops.decode, (bits, codebook))
    torch.library.opcheck(ops.decode_backward, (grad_y, bits, codebook.detach()))


@pytest.mark.real_gpu
def test_opcheck_with_drawn_noise(cuda):
    # opcheck reseeds torch's generators around each run, so the drawn noise must repeat.
    x = torch.randn(3, 70, 10, device=cuda, requires_grad=True)
    codebook = torch.randn(2 * 6, 10, device=cuda, requires_grad=True)
    torch.library.opcheck(ops.forward, (x, codebook, None, 0.5, True, False))


@pytest.mark.parametrize("training", [False, True])
def test_compile_fullgraph(cuda, training):
    layer = Bitcodes(10, 6, temperature=0.5).to(cuda).train(training)
    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(4, 30, 10, device=cuda, requires_grad=True)
    noise = torch.randn(4, 30, 6, device=cuda) if training else None
    y, bits = compiled(x, noise)
    y_eager, bits_eager = layer(x, noise)
    assert torch.equal(bits, bits_eager)
    torch.testing.assert_close(y, y_eager)
    wrt = [layer.codebook] + ([x] if training else [])
    grad = torch.randn_like(y)
    for a, b in zip(torch.autograd.grad(y, wrt, grad), torch.autograd.grad(y_eager, wrt, grad)):
        torch.testing.assert_close(a, b)


@pytest.mark.real_gpu
def test_mixed_devices_are_a_clear_error(cuda):
    codebook = torch.randn(2 * 3, 4)
    with pytest.raises(ValueError, match="same device"):
        functional.bitcodes(torch.randn(2, 4, device=cuda), codebook, training=False)
    with pytest.raises(ValueError, match="same device"):
        ops.forward(torch.randn(2, 4, device=cuda), codebook, None, 1.0, False, False)


def peak_bytes(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - start, out


@pytest.mark.real_gpu
def test_large_batch_memory(cuda):
    # bf16, 2^20 tokens x 256 features, 64 bits: the eval forward allocates y and bits and a
    # workspace bounded by a constant, not by the tokens: route gemm keeps its logits and one-hot
    # per chunk of tokens within 128 MiB (kWorkspaceBytes in csrc/cuda/gemm_plan.h), the CUDA-core
    # route needs none; 16 MiB more cover the codebook's terms and the allocator's rounding.
    # cuBLAS's own workspace (a constant per stream, made at its first GEMM) is warmed up first.
    # The reference's one-hot path needs far more.
    tokens, features, num_bits = 1 << 20, 256, 64
    layer = Bitcodes(features, num_bits).to(cuda, torch.bfloat16).eval()
    x = torch.randn(tokens, features, device=cuda, dtype=torch.bfloat16)
    outputs = tokens * features * 2 + tokens * num_bits * 8
    workspace = 128 << 20
    with torch.no_grad():
        layer(x[:4096])
        ours, _ = peak_bytes(lambda: layer(x))
        reference, _ = peak_bytes(lambda: functional.bitcodes(x, layer.codebook, training=False, backend="torch"))
    bound = outputs + workspace + (16 << 20)
    assert ours <= bound, f"eval forward peaked {ours / 2**20:.0f} MiB over its {outputs / 2**20:.0f} MiB of outputs"
    assert ours < reference


@pytest.mark.real_gpu
def test_more_than_2_to_the_31_elements(cuda):
    features, num_bits = 256, 16
    tokens = (1 << 31) // features + 100
    codebook = torch.randn(2 * num_bits, features, device=cuda, dtype=torch.bfloat16)
    x = torch.randn(tokens, features, device=cuda, dtype=torch.bfloat16)
    y, bits = functional.bitcodes(x, codebook, training=False, backend="native")
    tail = slice(tokens - 100, tokens)
    y_tail, bits_tail = functional.bitcodes(x[tail].cpu(), codebook.cpu(), training=False, backend="native")
    certify_bits(bits[tail].cpu(), x[tail].cpu(), codebook.cpu(), accumulated_in=torch.float32)
    same = (bits[tail].cpu() == bits_tail).all(-1, keepdim=True)  # tokens without a near-tie flip
    assert same.float().mean() > 0.9
    torch.testing.assert_close(torch.where(same, y[tail].cpu(), 0), torch.where(same, y_tail, 0))

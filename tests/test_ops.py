"""The registered ops: opcheck, torch.compile(fullgraph=True), autocast."""

import pytest
import torch

from bitcodes_ext import Bitcodes, functional, info, vq

ops = torch.ops.bitcodes_ext


def sample_inputs(dtype=torch.float32):
    x = torch.randn(3, 70, 10, dtype=dtype, requires_grad=True)
    codebook = torch.randn(2 * 6, 10, dtype=dtype, requires_grad=True)
    noise = torch.randn(3, 70, 6, dtype=dtype)
    return x, codebook, noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("euclidean", [False, True])
def test_opcheck_forward(native, dtype, euclidean):
    x, codebook, noise = sample_inputs(dtype)
    torch.library.opcheck(ops.forward, (x, codebook, None, 1.0, False, euclidean))
    torch.library.opcheck(ops.forward, (x, codebook, noise, 0.5, True, euclidean))


def test_opcheck_forward_with_drawn_noise(native):
    # Without injected noise the op reads the default generator; opcheck reseeds around each run.
    x, codebook, _ = sample_inputs()
    torch.library.opcheck(ops.forward, (x, codebook, None, 1.0, True, False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_backward_and_decode(native, dtype):
    x, codebook, noise = sample_inputs(dtype)
    x, codebook = x.detach(), codebook.detach()
    _, bits, z = ops.forward(x, codebook, noise, 0.5, True, False)
    grad_y = torch.randn_like(x)
    torch.library.opcheck(ops.backward, (grad_y, x, codebook, z, 0.5, False))
    torch.library.opcheck(ops.decode, (bits, codebook.requires_grad_()))
    torch.library.opcheck(ops.decode_backward, (grad_y, bits, codebook.detach()))


@pytest.mark.parametrize("training", [False, True])
def test_compile_fullgraph(native, training):
    layer = Bitcodes(10, 6, temperature=0.5).train(training)
    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(4, 30, 10, requires_grad=True)
    noise = torch.randn(4, 30, 6) if training else None
    y, bits = compiled(x, noise)
    y_eager, bits_eager = layer(x, noise)
    assert torch.equal(bits, bits_eager)
    torch.testing.assert_close(y, y_eager)
    grad = torch.randn_like(y)
    compiled_grads = torch.autograd.grad(y, [layer.codebook] + ([x] if training else []), grad)
    eager_grads = torch.autograd.grad(y_eager, [layer.codebook] + ([x] if training else []), grad)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b)


def test_compile_fullgraph_from_bits(native):
    layer = Bitcodes(10, 6)
    bits = torch.randint(0, 2, (5, 6))
    torch.testing.assert_close(torch.compile(layer.from_bits, fullgraph=True)(bits), layer.from_bits(bits))


def test_autocast_runs_in_the_autocast_dtype(backend):
    layer = Bitcodes(16, 5, backend=backend)
    x = torch.randn(2, 80, 16, requires_grad=True)
    noise = torch.randn(2, 80, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, bits = layer(x, noise)
    assert y.dtype == torch.bfloat16
    # Autocast casts x and the codebook to bfloat16, as a matmul would: the same as casting by hand.
    expected_y, expected_bits = functional.bitcodes(
        x.detach().bfloat16(), layer.codebook.detach().bfloat16(), training=True, noise=noise, backend=backend
    )
    assert torch.equal(bits, expected_bits) and torch.equal(y.detach(), expected_y)
    y.float().sum().backward()
    assert layer.codebook.grad.dtype == torch.float32 and x.grad.dtype == torch.float32  # back through the casts


def test_from_bits_and_vq_ignore_autocast(backend):
    # Neither has a matmul whose precision the user chose: both run in their accumulation type.
    layer = Bitcodes(16, 5, backend=backend)
    bits = torch.randint(0, 2, (40, 5))
    observations, codebook = torch.randn(50, 16), torch.randn(300, 16)
    expected_y, (expected_codes, expected_dist) = layer.from_bits(bits), vq(observations, codebook, backend=backend)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer.from_bits(bits)
        codes, dist = vq(observations, codebook, backend=backend)
    assert y.dtype == torch.float32 and torch.equal(y, expected_y)
    assert torch.equal(codes, expected_codes) and torch.equal(dist, expected_dist)


def test_autograd_gradcheck_in_float64(native):
    # Away from ties the training forward is smooth in the noise-free straight-through sense only
    # for the soft part; gradcheck the decode, whose gradient is exact.
    codebook = torch.randn(2 * 4, 5, dtype=torch.float64, requires_grad=True)
    bits = torch.randint(0, 2, (7, 4))
    assert torch.autograd.gradcheck(lambda c: ops.decode(bits, c), (codebook,))


@pytest.mark.parametrize("bits_dtype", [torch.uint8, torch.bool])
def test_opcheck_forward_with_bits_dtype(native, bits_dtype):
    x, codebook, noise = sample_inputs()
    torch.library.opcheck(ops.forward, (x, codebook, None, 1.0, False, False, bits_dtype))
    torch.library.opcheck(ops.forward, (x, codebook, noise, 0.5, True, True, bits_dtype))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("bits_dtype", [torch.uint8, torch.bool])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bits_dtype(backend, training, bits_dtype, dtype):
    # The CPU kernel (native) and the pure-torch path (torch) give the int64 bits in bits_dtype,
    # with the same y; the layer's keyword reaches them and its backward reads those bits.
    x, codebook, noise = (t.detach() for t in sample_inputs(dtype))
    noise = noise if training else None
    kwargs = dict(training=training, noise=noise, backend=backend)
    y, bits = functional.bitcodes(x, codebook, bits_dtype=bits_dtype, **kwargs)
    y_long, bits_long = functional.bitcodes(x, codebook, **kwargs)
    assert bits.dtype == bits_dtype and bits_long.dtype == torch.int64
    assert torch.equal(bits.long(), bits_long) and torch.equal(y, y_long)
    layer = Bitcodes(10, 6, backend=backend, bits_dtype=bits_dtype).to(dtype).train(training)
    xg = x.clone().requires_grad_()
    y, bits = layer(xg, noise)
    assert bits.dtype == bits_dtype and torch.equal(layer.from_bits(bits), layer.from_bits(bits.long()))
    y.sum().backward()
    assert layer.codebook.grad is not None and (xg.grad is not None) == training


def test_bits_dtype_must_be_one_of_three():
    x, codebook, _ = sample_inputs()
    with pytest.raises(TypeError, match="bits_dtype must be torch.int64, torch.uint8 or torch.bool"):
        functional.bitcodes(x, codebook, training=False, bits_dtype=torch.int32)
    with pytest.raises(TypeError, match="bits_dtype must be"):
        Bitcodes(10, 6, bits_dtype=torch.float32)


def test_one_list_of_op_names(native):
    # bitcodes_ext.info.OPS, which the tests, the emulator and the route model read, names every
    # schema that csrc/bitcodes.cpp declares, and info.ATEN_OPS the ones entropy.py defines.
    declared = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas() if s.name.startswith("bitcodes_ext::")}
    assert declared == set(info.OPS) | set(info.ATEN_OPS)
    assert not set(info.OPS) & set(info.ATEN_OPS)

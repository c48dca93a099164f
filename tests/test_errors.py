"""Bad input gets a clear error naming the argument, on every backend and on the raw ops."""

import pytest
import torch

from bitcodes_ext import Bitcodes, functional

ops = torch.ops.bitcodes_ext


@pytest.mark.parametrize("features,num_bits,name", [(0, 4, "features"), (8, 0, "num_bits"), (-1, 4, "features"), (8, 2.5, "num_bits")])
def test_constructor_sizes(features, num_bits, name):
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        Bitcodes(features, num_bits)


@pytest.mark.parametrize("temperature", [0, -1.0, float("inf"), float("nan")])
def test_constructor_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        Bitcodes(8, 4, temperature)


def test_constructor_metric_and_backend():
    with pytest.raises(ValueError, match="metric must be one of"):
        Bitcodes(8, 4, metric="cosine")
    with pytest.raises(ValueError, match="backend must be one of"):
        Bitcodes(8, 4, backend="cuda")


def test_wrong_feature_size(backend):
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 8\)"):
        Bitcodes(8, 4, backend=backend)(torch.randn(3, 7))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_non_float_x(backend, dtype):
    with pytest.raises(TypeError, match="x must be a float32/float64/float16/bfloat16 tensor"):
        Bitcodes(8, 4, backend=backend)(torch.zeros(3, 8, dtype=dtype))


def test_dtype_mismatch_outside_autocast(backend):
    with pytest.raises(TypeError, match="same dtype outside autocast"):
        Bitcodes(8, 4, backend=backend)(torch.randn(3, 8, dtype=torch.float64))


def test_device_mismatch(backend):
    with pytest.raises(ValueError, match="x and codebook must be on the same device"):
        Bitcodes(8, 4, backend=backend)(torch.randn(3, 8, device="meta"))


def test_noise_checks(backend):
    layer = Bitcodes(8, 4, backend=backend)
    x = torch.randn(5, 8)
    with pytest.raises(ValueError, match=r"noise must have shape \(5, 4\)"):
        layer(x, torch.randn(5, 3))
    with pytest.raises(TypeError, match="noise must be a floating-point tensor"):
        layer(x, torch.zeros(5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="noise is only used in training"):
        layer.eval()(x, torch.randn(5, 4))


@pytest.mark.parametrize("bits,error,match", [
    (torch.tensor([[0, 1, 2, 0]]), ValueError, "bits must contain only 0 and 1"),
    (torch.tensor([[0, 1, -1, 0]]), ValueError, "bits must contain only 0 and 1"),
    (torch.tensor([[0, 1, 256, 0]]), ValueError, "bits must contain only 0 and 1"),
    (torch.tensor([[0, 1, 0]]), ValueError, r"bits must have shape \(\.\.\., num_bits\) with num_bits = 4"),
    (torch.tensor([[0.0, 1.0, 0.0, 1.0]]), TypeError, "bits must be an integer or bool tensor"),
])
def test_from_bits_bad_bits(backend, bits, error, match):
    with pytest.raises(error, match=match):
        Bitcodes(8, 4, backend=backend).from_bits(bits)


@pytest.mark.parametrize("codebook,error,match", [
    (torch.randn(3, 8), ValueError, r"codebook must have shape \(2 \* num_bits, features\)"),
    (torch.randn(8), ValueError, r"codebook must have shape"),
    (torch.randn(4, 0), ValueError, r"codebook must have shape"),
    (torch.zeros(4, 8, dtype=torch.long), TypeError, "codebook must be a"),
])
def test_bad_codebook(backend, codebook, error, match):
    with pytest.raises(error, match=match):
        functional.bitcodes(torch.randn(2, 8), codebook, training=False, backend=backend)


def test_raw_ops_check_their_arguments(native):
    x, codebook = torch.randn(5, 8), torch.randn(8, 8)
    with pytest.raises(ValueError, match=r"bitcodes_ext::forward: x must have shape \(\.\.\., features\) with features = 8"):
        ops.forward(torch.randn(5, 7), codebook, None, 1.0, False, False)
    with pytest.raises(TypeError, match="bitcodes_ext::forward: x must be a floating-point tensor"):
        ops.forward(x.long(), codebook, None, 1.0, False, False)
    with pytest.raises(ValueError, match="bitcodes_ext::forward: temperature must be a finite number > 0"):
        ops.forward(x, codebook, torch.randn(5, 4), 0.0, True, False)
    with pytest.raises(ValueError, match=r"bitcodes_ext::forward: noise must have shape \[5, 4\]"):
        ops.forward(x, codebook, torch.randn(5, 3), 1.0, True, False)
    with pytest.raises(ValueError, match=r"bitcodes_ext::forward: codebook must have shape"):
        ops.forward(x, torch.randn(7, 8), None, 1.0, False, False)
    with pytest.raises(ValueError, match="bitcodes_ext::decode: bits must contain only 0 and 1"):
        ops.decode(torch.full((2, 4), 3), codebook)
    with pytest.raises(TypeError, match="bitcodes_ext::decode: bits must be an integer or bool tensor"):
        ops.decode(torch.zeros(2, 4), codebook)
    with pytest.raises(ValueError, match="bitcodes_ext::decode_backward: grad_y must have shape"):
        ops.decode_backward(torch.randn(3, 8), torch.zeros(2, 4, dtype=torch.long), codebook)
    with pytest.raises(TypeError, match="bitcodes_ext::backward: z must have dtype Float"):
        ops.backward(x, x, codebook, torch.zeros(5, 4, dtype=torch.float64), 1.0, False)


def test_backend_native_without_kernels_is_an_error(monkeypatch):
    from bitcodes_ext import _extension

    monkeypatch.setitem(_extension._KERNELS, "cpu", False)
    with pytest.raises(RuntimeError, match="backend='native' but no compiled kernels for cpu"):
        functional.bitcodes(torch.randn(2, 8), torch.randn(8, 8), training=False, backend="native")


def test_fallback_warns_once(monkeypatch):
    from bitcodes_ext import _extension

    monkeypatch.setitem(_extension._KERNELS, "cpu", False)
    monkeypatch.setattr(_extension, "_warned", False)
    with pytest.warns(RuntimeWarning, match="compiled kernels unavailable"):
        y, _ = functional.bitcodes(torch.randn(2, 8), torch.randn(8, 8), training=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        functional.bitcodes(torch.randn(2, 8), torch.randn(8, 8), training=False)

"""Functional Bitcodes: the compiled kernels where they exist, else the pure-torch reference."""

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _extension, _validate, reference

BACKENDS = ("auto", "native", "torch")


def _use_kernels(device: torch.device, backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"bitcodes: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    available = _extension.has_kernels(device.type)
    if backend == "native" and not available:
        raise RuntimeError(
            f"bitcodes: backend='native' but no compiled kernels for {device.type} "
            f"({_extension.unavailable_reason(device.type)})"
        )
    if not available:
        _extension.warn_fallback(device.type)
    return available


def _autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    if device.type in ("cpu", "cuda") and torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


def without_autocast(device: torch.device):
    """The pure-torch fallback's matmuls run in its float32 (or float64) accumulation type, as the
    kernels do; autocast would otherwise round them to the autocast dtype."""
    return torch.autocast(device.type, enabled=False)


def bitcodes(
    x: Tensor,
    codebook: Tensor,
    *,
    training: bool,
    temperature: float = 1.0,
    metric: str = "dot",
    noise: Optional[Tensor] = None,
    backend: str = "auto",
    bits_dtype: torch.dtype = torch.int64,
) -> Tuple[Tensor, Tensor]:
    """Quantizes x (..., features) to (y, bits) with a (2 * num_bits, features) codebook.

    bits_i = [x . (c[2i+1] - c[2i]) + noise_i > 0] and y = sum_i c[2i + bits_i]. In training,
    noise is per-bit logistic noise (g1 - g0 of two Gumbel samples) and the gradient is the
    straight-through one of F.gumbel_softmax(hard=True); pass `noise` to fix it. In eval there
    is no noise, and only the codebook gets a gradient. Under autocast, x and the codebook are
    cast to the autocast dtype, as a matmul would be. bits come as int64 (as bitcodes-pytorch
    returns them), or as `bits_dtype=torch.uint8` / `torch.bool`, which the kernels write at one
    byte per bit instead of eight.
    """
    _validate.check_codebook(codebook)
    cast = _autocast_dtype(codebook.device)
    _validate.check_x(x, codebook, autocast=cast is not None)
    _validate.check_temperature(temperature)
    _validate.check_metric(metric)
    _validate.check_bits_dtype(bits_dtype)
    if noise is not None:
        _validate.check_noise(noise, x, codebook.shape[0] // 2, training)
    if cast is not None:
        x, codebook = x.to(cast), codebook.to(cast)
    if _use_kernels(x.device, backend):
        y, bits, _ = torch.ops.bitcodes_ext.forward(
            x, codebook, noise, float(temperature), bool(training), metric == "euclidean", bits_dtype
        )
        return y, bits
    with without_autocast(x.device):
        y, bits = reference.bitcodes(x, codebook, training=training, temperature=temperature, metric=metric, noise=noise)
    return y, bits.to(bits_dtype)


def decode(bits: Tensor, codebook: Tensor, *, backend: str = "auto") -> Tensor:
    """y = sum_i c[2i + bits_i] for integer or bool bits (..., num_bits) of 0s and 1s."""
    _validate.check_codebook(codebook)
    use_kernels = _use_kernels(codebook.device, backend)
    # The kernels check the values as they read them; the fallback checks them here.
    _validate.check_bits(bits, codebook.shape[0] // 2, values=not use_kernels)
    if bits.device != codebook.device:
        raise ValueError(f"bits and codebook must be on the same device, got {bits.device} and {codebook.device}")
    if use_kernels:
        return torch.ops.bitcodes_ext.decode(bits, codebook)
    with without_autocast(codebook.device):
        return reference.decode(bits, codebook)

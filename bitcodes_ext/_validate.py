"""Argument checks shared by every backend, so the kernels and the fallback fail alike.

The compiled ops check again in C++ (csrc/checks.h) for callers that use them directly.
"""

import math

import torch
from torch import Tensor

from .reference import METRICS

# Every floating dtype the ops accept (the one list: bitcodes_ext.info and the tests read it).
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_sizes(features: int, num_bits: int) -> None:
    for name, value in (("features", features), ("num_bits", num_bits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Bitcodes: {name} must be an integer >= 1, got {value!r}")


def check_temperature(temperature) -> None:
    if torch.compiler.is_compiling():
        return  # dynamo may trace a float attribute as symbolic; the layer checked it at construction
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        temperature > 0 and math.isfinite(temperature)
    ):
        raise ValueError(f"bitcodes: temperature must be a finite number > 0, got {temperature!r}")


def check_metric(metric) -> None:
    if metric not in METRICS:
        raise ValueError(f"bitcodes: metric must be one of {METRICS}, got {metric!r}")


def _check_float(t, name: str, op: str) -> None:
    if not isinstance(t, Tensor) or t.dtype not in FLOAT_DTYPES:
        got = t.dtype if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"{op}: {name} must be a float32/float64/float16/bfloat16 tensor, got {got}")


def check_codebook(codebook: Tensor) -> None:
    _check_float(codebook, "codebook", "bitcodes")
    if codebook.dim() != 2 or codebook.shape[0] < 2 or codebook.shape[0] % 2 or codebook.shape[1] < 1:
        raise ValueError(
            "bitcodes: codebook must have shape (2 * num_bits, features) with num_bits >= 1 and "
            f"features >= 1, got {tuple(codebook.shape)}"
        )


def check_x(x: Tensor, codebook: Tensor, *, autocast: bool = False) -> None:
    _check_float(x, "x", "bitcodes")
    features = codebook.shape[1]
    if x.dim() < 1 or x.shape[-1] != features:
        raise ValueError(f"bitcodes: x must have shape (..., {features}) (features = {features}), got {tuple(x.shape)}")
    if x.device != codebook.device:
        raise ValueError(f"bitcodes: x and codebook must be on the same device, got {x.device} and {codebook.device}")
    if x.dtype != codebook.dtype and not autocast:
        raise TypeError(
            f"bitcodes: x and codebook must have the same dtype outside autocast, got {x.dtype} and {codebook.dtype}"
        )


BITS_DTYPES = (torch.int64, torch.uint8, torch.bool)


def check_bits_dtype(bits_dtype) -> None:
    if bits_dtype not in BITS_DTYPES:
        raise TypeError(f"bitcodes: bits_dtype must be torch.int64, torch.uint8 or torch.bool, got {bits_dtype!r}")


def check_noise(noise: Tensor, x: Tensor, num_bits: int, training: bool) -> None:
    if not training:
        raise ValueError("bitcodes: noise is only used in training; pass noise=None in eval")
    if not isinstance(noise, Tensor) or not noise.is_floating_point():
        got = noise.dtype if isinstance(noise, Tensor) else type(noise).__name__
        raise TypeError(f"bitcodes: noise must be a floating-point tensor, got {got}")
    expected = (*x.shape[:-1], num_bits)
    if tuple(noise.shape) != expected:
        raise ValueError(f"bitcodes: noise must have shape {expected} (x's leading dims, num_bits), got {tuple(noise.shape)}")
    if noise.device != x.device:
        raise ValueError(f"bitcodes: noise and x must be on the same device, got {noise.device} and {x.device}")


def check_bits(bits: Tensor, num_bits: int, *, values: bool = True) -> None:
    """bits: an integer or bool tensor of shape (..., num_bits) holding only 0 and 1."""
    if not isinstance(bits, Tensor) or bits.is_floating_point() or bits.is_complex():
        got = bits.dtype if isinstance(bits, Tensor) else type(bits).__name__
        raise TypeError(f"bits must be an integer or bool tensor of 0s and 1s, got {got}")
    if bits.dim() < 1 or bits.shape[-1] != num_bits:
        raise ValueError(f"bits must have shape (..., num_bits) with num_bits = {num_bits}, got {tuple(bits.shape)}")
    if values and bits.dtype != torch.bool and bits.numel() and bool(((bits != 0) & (bits != 1)).any()):
        raise ValueError("bits must contain only 0 and 1")


def check_vq(observations: Tensor, codebook: Tensor) -> None:
    _check_float(observations, "observations", "vq")
    _check_float(codebook, "codebook", "vq")
    if codebook.dim() != 2 or codebook.shape[0] < 1 or codebook.shape[1] < 1:
        raise ValueError(f"vq: codebook must have shape (num_codes, features) with num_codes >= 1, got {tuple(codebook.shape)}")
    features = codebook.shape[1]
    if observations.dim() < 1 or observations.shape[-1] != features:
        raise ValueError(f"vq: observations must have shape (..., {features}) to match the codebook, got {tuple(observations.shape)}")
    if observations.device != codebook.device:
        raise ValueError(f"vq: observations and codebook must be on the same device, got {observations.device} and {codebook.device}")
    if observations.dtype != codebook.dtype:
        raise TypeError(f"vq: observations and codebook must have the same dtype, got {observations.dtype} and {codebook.dtype}")

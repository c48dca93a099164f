"""Nearest-code vector quantization without an N x K distance matrix."""

from typing import Tuple

import torch
from torch import Tensor

from . import _validate, reference
from .functional import _use_kernels, without_autocast


def vq(observations: Tensor, codebook: Tensor, *, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """(..., D) observations, (K, D) codebook -> codes (...) int64, distance (...) in the
    observations' dtype.

    The semantics of scipy.cluster.vq.vq: the Euclidean distance (not squared) to the nearest
    code, ties to the lowest index; a row with a NaN gets code 0 and distance NaN. The fused
    kernel scores codes as |c|^2 - 2 x.c one codebook tile at a time and recomputes the chosen
    code's distance directly, so codes can differ from an exact search only where two codes
    are within rounding of each other.
    """
    _validate.check_vq(observations, codebook)
    if _use_kernels(observations.device, backend):
        return torch.ops.bitcodes_ext.vq(observations, codebook)
    with without_autocast(observations.device):
        return reference.vq(observations, codebook)

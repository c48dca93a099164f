"""Exact entropies of independent bits: the usage regulariser of LFQ, BSQ and Bitcodes.

binary_entropy(logits) never materialises the N x 2^B code probabilities that other libraries
build: the per-sample entropy is a sum over bits, and the codebook entropy comes from the
code-usage sums of code_tables.py (one GEMM per chunk of tokens). The sums are a custom op with
its own backward op, so torch.compile sees both; the normalisation, the collective and the
entropy are plain torch on 2^B values.
"""

from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from . import code_tables
from .info import ATEN_OPS
from .reference import compute_dtype

# Beyond this, the 2^B usage table itself no longer fits a GPU comfortably (2^24 float32 are
# 64 MiB; 2^30 would be 4 GiB): larger codes need group_size.
MAX_EXACT_BITS = 24
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@torch.library.custom_op(f"bitcodes_ext::{ATEN_OPS[0]}", mutates_args=())
def code_usage_sums(logits: Tensor, group_size: int) -> Tensor:
    """(N, B) bit log-odds in float32/float64 -> flat code-usage sums of each group of bits."""
    return code_tables.usage_sums(logits, group_size)


@code_usage_sums.register_fake
def _(logits, group_size):
    return logits.new_empty(code_tables.sums_size(logits.shape[1], group_size))


@torch.library.custom_op(f"bitcodes_ext::{ATEN_OPS[1]}", mutates_args=())
def code_usage_sums_backward(grad: Tensor, logits: Tensor, group_size: int) -> Tensor:
    return code_tables.usage_sums_backward(grad, logits, group_size)


@code_usage_sums_backward.register_fake
def _(grad, logits, group_size):
    return torch.empty_like(logits)


def _setup_sums(ctx, inputs, output):
    logits, group_size = inputs
    ctx.save_for_backward(logits)
    ctx.group_size = group_size


def _sums_backward(ctx, grad):
    (logits,) = ctx.saved_tensors
    return code_usage_sums_backward(grad.contiguous(), logits, ctx.group_size), None


code_usage_sums.register_autograd(_sums_backward, setup_context=_setup_sums)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _global_sums(sums: Tensor, tokens: int) -> Tuple[Tensor, Tensor]:
    """Sums and token count over every rank. The all-reduce is autograd-aware: its backward
    sums the gradients of all ranks, so each rank's logits get the gradient of the global
    objective that every rank computes (a plain all_reduce would give each rank only its own
    share, vector-quantize-pytorch issue #158)."""
    count = torch.tensor(float(tokens), dtype=sums.dtype, device=sums.device)
    if not _distributed():
        return sums, count
    from torch.distributed.nn.functional import all_reduce

    dist.all_reduce(count)
    return all_reduce(sums), count


def _entropy(p: Tensor) -> Tensor:
    """-sum p log p with 0 log 0 = 0, and a zero gradient (not NaN) where p = 0."""
    return -(p * torch.where(p > 0, p, torch.ones_like(p)).log()).sum()


def per_bit_entropy(logits: Tensor) -> Tensor:
    """h(sigmoid(l)) elementwise, in nats, without cancellation: with m = |l|,
    h = softplus(-m) + m * sigmoid(-m). m is capped where sigmoid(-m) is 0 in every dtype,
    so that infinite logits give 0, not inf * 0."""
    m = logits.abs().clamp(max=1e4)
    return F.softplus(-m) + m * torch.sigmoid(-m)


def _check(logits, group_size) -> int:
    if not isinstance(logits, Tensor) or logits.dtype not in _FLOAT_DTYPES:
        got = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(f"binary_entropy: logits must be a float32/float64/float16/bfloat16 tensor, got {got}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"binary_entropy: logits must have shape (..., num_bits) with num_bits >= 1, got {tuple(logits.shape)}")
    if logits.numel() == 0:
        raise ValueError(f"binary_entropy: logits must hold at least one token, got shape {tuple(logits.shape)}")
    num_bits = logits.shape[-1]
    if group_size is None:
        if num_bits > MAX_EXACT_BITS:
            raise ValueError(
                f"binary_entropy: the exact codebook entropy of {num_bits} bits needs a 2^{num_bits} usage "
                f"table; pass group_size <= {MAX_EXACT_BITS} for the sum of groups' entropies (as BSQ does)"
            )
        return num_bits
    if isinstance(group_size, bool) or not isinstance(group_size, int) or not 1 <= group_size <= MAX_EXACT_BITS:
        raise ValueError(f"binary_entropy: group_size must be an integer in [1, {MAX_EXACT_BITS}] or None, got {group_size!r}")
    return group_size


def binary_entropy(logits: Tensor, group_size: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Exact entropies of codes of independent bits, in nats: (per_sample, codebook), 0-d.

    logits (..., B): the log-odds that bit b is 1, one row per token (every leading dim is a
    token). per_sample is the mean over tokens of sum_b h(sigmoid(l_b)). codebook is H(a),
    where a(c) = mean over tokens of prod_b P(bit b = c_b) over all 2^B codes: exact, never
    sampled or clamped, in O(N * B + 2^B) memory. With group_size=g it is the sum over
    consecutive groups of g bits (the last may be shorter) of each group's codebook entropy,
    as BSQ approximates it; without it, B may be at most 24.

    Computed in float32 (float64 for float64 logits), which is also the dtype returned.
    Differentiable; a code with a = 0 contributes nothing, to the value or the gradient. Under
    torch.distributed, a is the mean over every rank's tokens (a collective: every rank must
    call it), and the gradient is that of the global codebook entropy; per_sample stays each
    rank's own mean. On CUDA the GEMMs follow torch's TF32 setting for float32.
    """
    group_size = _check(logits, group_size)
    flat = logits.reshape(-1, logits.shape[-1]).to(compute_dtype(logits.dtype))
    per_sample = per_bit_entropy(flat).sum(1).mean()
    sums, count = _global_sums(code_usage_sums(flat.contiguous(), group_size), flat.shape[0])
    return per_sample, _entropy(sums / count)

"""The oracle: Bitcodes in plain PyTorch.

This is the math at the top of README.md written as two GEMMs, with autograd doing
the straight-through Gumbel backward. It is the fallback when the compiled kernels
are missing and the ground truth of every parity test, so it imports nothing
from this package.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

METRICS = ("dot", "euclidean")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def gumbel_pair_noise(shape, dtype: torch.dtype, device) -> Tensor:
    """Per-bit logistic noise g1 - g0, drawn exactly as F.gumbel_softmax draws its Gumbel samples.

    Drawing a (..., num_bits, 2) tensor with `-empty.exponential_().log()` consumes the generator
    the same way bitcodes-pytorch does, so the same seed gives the same noise.
    """
    gumbels = -torch.empty(*shape, 2, dtype=dtype, device=device).exponential_().log()
    return gumbels[..., 1] - gumbels[..., 0]


def pair_logits(x: Tensor, codebook: Tensor, metric: str = "dot") -> Tensor:
    """logit_i = x . (c[2i+1] - c[2i]), plus -(|c[2i+1]|^2 - |c[2i]|^2) / 2 for the euclidean metric."""
    even, odd = codebook[0::2], codebook[1::2]
    logits = x @ (odd - even).T
    if metric == "euclidean":
        logits = logits - 0.5 * (odd.square().sum(-1) - even.square().sum(-1))
    return logits


def decode(bits: Tensor, codebook: Tensor) -> Tensor:
    """y = sum_i c[2i] + sum_i bits_i (c[2i+1] - c[2i]), in the accumulation type, rounded once
    to the codebook's dtype: the same arithmetic as bitcodes()' y, so from_bits(bits) == y."""
    acc = compute_dtype(codebook.dtype)
    cb = codebook.to(acc)
    even, odd = cb[0::2], cb[1::2]
    return (even.sum(0) + bits.to(acc) @ (odd - even)).to(codebook.dtype)


def bitcodes(
    x: Tensor,
    codebook: Tensor,
    *,
    training: bool,
    temperature: float = 1.0,
    metric: str = "dot",
    noise: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Returns (y, bits): y has x's shape and dtype, bits is (..., num_bits) int64.

    In training, bits = [logit + noise > 0] and the gradient is that of
    F.gumbel_softmax(hard=True) over each pair. In eval, bits = [logit > 0] and
    only the codebook gets a gradient, as in bitcodes-pytorch.
    """
    acc = compute_dtype(x.dtype)
    xc, cb = x.to(acc), codebook.to(acc)
    if training:
        logits = pair_logits(xc, cb, metric)
        if noise is None:
            noise = gumbel_pair_noise(logits.shape, acc, x.device)
        z = logits + noise.to(acc)
        bits = z.detach() > 0
        soft = torch.sigmoid(z / temperature)
        select = bits.to(acc) - soft.detach() + soft  # straight-through
    else:
        with torch.no_grad():
            bits = pair_logits(xc, cb, metric) > 0
        select = bits
    y = decode(select, cb)
    return y.to(x.dtype), bits.long()


def vq(observations: Tensor, codebook: Tensor, chunk: int = 4096) -> Tuple[Tensor, Tensor]:
    """Nearest code and its Euclidean distance, as scipy.cluster.vq.vq: ties go to the lowest
    index, a NaN row gets code 0 and distance NaN. Chunked, so memory stays O(chunk x K)."""
    acc = compute_dtype(observations.dtype)
    x = observations.reshape(-1, codebook.shape[1]).to(acc)
    c = codebook.to(acc)
    norms = c.square().sum(1)
    codes = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        scores = norms - 2 * x[start : start + chunk] @ c.T
        codes[start : start + chunk] = torch.nan_to_num(scores, nan=float("inf")).argmin(1)
    dist = (x.double() - codebook.double()[codes]).square().sum(1).sqrt()
    lead = observations.shape[:-1]
    return codes.reshape(lead), dist.to(observations.dtype).reshape(lead)

"""Code-usage sums of independent bits by two half tables: one GEMM per chunk of tokens.

Given each token's bit log-odds l (N, B), the probability of code c (bit 0 the most
significant) is prod_b P(bit b = c_b). Splitting the B bits into a high half of h bits and a low
half of B - h, that probability is T_hi[n, c >> (B - h)] * T_lo[n, c & (2^(B-h) - 1)], where each
half's table holds the 2^h (or 2^(B-h)) products of its own bits. So the code-usage sums
S = sum_n T_hi[n]^T T_lo[n] (2^h x 2^(B-h), row-major = code order) are one GEMM per chunk of
tokens, and never N x 2^B. The backward of a linear functional sum(G * S) is two more GEMMs per
chunk (dT_hi = T_lo G^T, dT_lo = T_hi G) with the tables rebuilt, so memory stays
O(chunk x 2^(B/2) + 2^B) however many tokens there are.

Plain ATen (oneDNN/MKL on the CPU, cuBLAS on CUDA): the GEMMs are 2^(B/2) times the table
building, so a fused kernel would save little (benchmarks/NOTES.md, "Binary entropy").
"""

from typing import List, Tuple

import torch
from torch import Tensor

# Table entries (both halves) per chunk of tokens: 2^22 float32 entries are 16 MiB of tables,
# big enough for the GEMMs to run near their peak and small enough to keep memory flat.
CHUNK_TABLE_ENTRIES = {"cpu": 1 << 22, "cuda": 1 << 24}


def group_spans(num_bits: int, group_size: int) -> List[Tuple[int, int]]:
    """Consecutive groups of group_size bits, the last one possibly shorter: [(start, stop)]."""
    return [(start, min(start + group_size, num_bits)) for start in range(0, num_bits, group_size)]


def sums_size(num_bits: int, group_size: int) -> int:
    """Length of the flat sums of every group: sum over groups of 2^(group's bits)."""
    return sum(1 << (stop - start) for start, stop in group_spans(num_bits, group_size))


def half_split(num_bits: int) -> int:
    """Bits in the high half: the tables are 2^(B // 2) and 2^(B - B // 2) wide."""
    return num_bits // 2


def chunk_tokens(num_bits: int, device: torch.device) -> int:
    high = half_split(num_bits)
    width = (1 << high) + (1 << (num_bits - high))
    return max(1, CHUNK_TABLE_ENTRIES.get(device.type, CHUNK_TABLE_ENTRIES["cuda"]) // width)


def bit_probabilities(logits: Tensor) -> Tuple[Tensor, Tensor]:
    """(P(bit = 1), P(bit = 0)), each from its own sigmoid so that neither loses precision at
    saturation (1 - sigmoid(l) would round to 0 long before sigmoid(-l) does)."""
    return torch.sigmoid(logits), torch.sigmoid(-logits)


def build_table(one: Tensor, zero: Tensor, out: Tensor) -> Tensor:
    """Writes prod_k P(bit k = i_k) into out[:, i] for every i of the bits' width (bit 0 the
    most significant), by doubling from the last bit: no temporaries beyond `out`."""
    bits = one.shape[1]
    if bits == 0:
        return out.fill_(1)
    out[:, 0] = zero[:, bits - 1]
    out[:, 1] = one[:, bits - 1]
    width = 2
    for k in range(bits - 2, -1, -1):
        # Bit k is now the most significant: its 1s take the upper half of the doubled table.
        torch.mul(out[:, :width], one[:, k : k + 1], out=out[:, width : 2 * width])
        out[:, :width].mul_(zero[:, k : k + 1])
        width *= 2
    return out


def bit_matrix(bits: int, like: Tensor) -> Tensor:
    """(2^bits, bits): row i holds the bits of i, most significant first."""
    index = torch.arange(1 << bits, device=like.device)
    shifts = torch.arange(bits - 1, -1, -1, device=like.device)
    return ((index.unsqueeze(1) >> shifts) & 1).to(like.dtype)


class _HalfTables:
    """Reusable buffers for one group's two tables over chunks of up to `rows` tokens."""

    def __init__(self, num_bits: int, rows: int, like: Tensor):
        self.high = half_split(num_bits)
        self.low = num_bits - self.high
        self.hi = like.new_empty(rows, 1 << self.high)
        self.lo = like.new_empty(rows, 1 << self.low)

    def fill(self, one: Tensor, zero: Tensor) -> Tuple[Tensor, Tensor]:
        rows = one.shape[0]
        hi = build_table(one[:, : self.high], zero[:, : self.high], self.hi[:rows])
        lo = build_table(one[:, self.high :], zero[:, self.high :], self.lo[:rows])
        return hi, lo


def _chunks(logits: Tensor, num_bits: int):
    step = chunk_tokens(num_bits, logits.device)
    for start in range(0, logits.shape[0], step):
        yield logits[start : start + step]


def usage_sums(logits: Tensor, group_size: int) -> Tensor:
    """logits (N, B) in the compute dtype -> the flat code-usage sums of each group of bits,
    group after group, each in code order: S[c] = sum_n prod_b P(bit b of token n = c_b)."""
    num_bits = logits.shape[1]
    spans = group_spans(num_bits, group_size)
    sums = logits.new_zeros(sums_size(num_bits, group_size))
    offset = 0
    for start, stop in spans:
        bits = stop - start
        group = logits[:, start:stop]
        acc = sums[offset : offset + (1 << bits)].view(1 << half_split(bits), -1)
        tables = _HalfTables(bits, min(group.shape[0], chunk_tokens(bits, group.device)), group)
        for chunk in _chunks(group, bits):
            hi, lo = tables.fill(*bit_probabilities(chunk))
            acc.addmm_(hi.T, lo)
        offset += 1 << bits
    return sums


def usage_sums_backward(grad: Tensor, logits: Tensor, group_size: int) -> Tensor:
    """The gradient of sum(grad * usage_sums(logits)) with respect to logits (N, B).

    With E = dT * T for each half's table T and its gradient dT, d log T[n, i] / d l_b =
    i_b - p_b gives grad_l[n, b] = (E @ bits)[n, b] - p_b * sum_i E[n, i].
    """
    num_bits = logits.shape[1]
    grad_logits = torch.empty_like(logits)
    offset = 0
    for start, stop in group_spans(num_bits, group_size):
        bits = stop - start
        group = logits[:, start:stop]
        g = grad[offset : offset + (1 << bits)].view(1 << half_split(bits), -1)
        tables = _HalfTables(bits, min(group.shape[0], chunk_tokens(bits, group.device)), group)
        hi_bits, lo_bits = bit_matrix(tables.high, logits), bit_matrix(tables.low, logits)
        row = 0
        for chunk in _chunks(group, bits):
            one, zero = bit_probabilities(chunk)
            hi, lo = tables.fill(one, zero)
            rows = chunk.shape[0]
            out = grad_logits[row : row + rows, start:stop]
            for table, other, g_side, bit_rows, cols in (
                (hi, lo, g.T, hi_bits, slice(0, tables.high)),
                (lo, hi, g, lo_bits, slice(tables.high, bits)),
            ):
                weighted = (other @ g_side).mul_(table)  # E = dT * T
                torch.mm(weighted, bit_rows, out=out[:, cols])
                out[:, cols].addcmul_(one[:, cols], weighted.sum(1, keepdim=True), value=-1)
            row += rows
        offset += 1 << bits
    return grad_logits

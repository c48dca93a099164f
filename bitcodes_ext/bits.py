"""Conversions between bit codes and integers. All MSB first, on any device.

to_bits and to_decimal keep bitcodes_pytorch's semantics; group_size reads long codes a few
bits at a time ("convert to decimal one or two rows at a time"), and pack_bits stores codes
at one bit per bit.
"""

from typing import List, Optional

import torch
from torch import Tensor

_MAX_BITS = 63  # what an int64 holds without its sign bit


def _check_integer(t: Tensor, name: str) -> None:
    if not isinstance(t, Tensor) or t.is_floating_point() or t.is_complex():
        got = t.dtype if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"{name} must be an integer or bool tensor, got {got}")


def _check_count(value, name: str, upper: int = _MAX_BITS) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise ValueError(f"{name} must be an integer in [1, {upper}], got {value!r}")


def _group_widths(num_bits: int, group_size: int) -> List[int]:
    full, rest = divmod(num_bits, group_size)
    return [group_size] * full + ([rest] if rest else [])


def _msb_weights(width: int, device) -> Tensor:
    return 2 ** torch.arange(width - 1, -1, -1, device=device, dtype=torch.int64)


def to_decimal(bits: Tensor, group_size: Optional[int] = None) -> Tensor:
    """(..., num_bits) of 0/1 -> (...) int64, or (..., ceil(num_bits / group_size)) int64.

    With group_size=k, bits are read k at a time, MSB first; a shorter last group is read as a
    number of its own width.
    """
    _check_integer(bits, "bits")
    if bits.dim() < 1 or bits.shape[-1] < 1:
        raise ValueError(f"bits must have shape (..., num_bits) with num_bits >= 1, got {tuple(bits.shape)}")
    num_bits = bits.shape[-1]
    if bits.dtype != torch.bool and bits.numel() and bool(((bits != 0) & (bits != 1)).any()):
        raise ValueError("bits must contain only 0 and 1")
    if group_size is None:
        if num_bits > _MAX_BITS:
            raise ValueError(
                f"to_decimal: {num_bits} bits do not fit in int64 (at most {_MAX_BITS}); "
                "pass group_size to read them a few bits at a time"
            )
        return (bits.long() * _msb_weights(num_bits, bits.device)).sum(-1)
    _check_count(group_size, "group_size")
    groups, start = [], 0
    for width in _group_widths(num_bits, group_size):
        groups.append((bits[..., start : start + width].long() * _msb_weights(width, bits.device)).sum(-1))
        start += width
    return torch.stack(groups, dim=-1)


def to_bits(indices: Tensor, num_bits: int, group_size: Optional[int] = None) -> Tensor:
    """(...) integers -> (..., num_bits) int64 bits, MSB first; the inverse of to_decimal.

    With group_size=k, indices has shape (..., ceil(num_bits / k)) and each holds k bits
    (the last one what is left), as to_decimal(bits, group_size=k) returns.
    """
    _check_integer(indices, "indices")
    if group_size is None:
        _check_count(num_bits, "num_bits")
        shifts = torch.arange(num_bits - 1, -1, -1, device=indices.device, dtype=torch.int64)
        return (indices.long().unsqueeze(-1) >> shifts) & 1
    _check_count(group_size, "group_size")
    _check_count(num_bits, "num_bits", upper=2**62)
    widths = _group_widths(num_bits, group_size)
    if indices.dim() < 1 or indices.shape[-1] != len(widths):
        raise ValueError(
            f"indices must have shape (..., {len(widths)}) for {num_bits} bits read {group_size} at a time, "
            f"got {tuple(indices.shape)}"
        )
    return torch.cat([to_bits(indices[..., g], width) for g, width in enumerate(widths)], dim=-1)


def pack_bits(bits: Tensor) -> Tensor:
    """(..., num_bits) of 0/1 -> uint8 (..., ceil(num_bits / 8)), MSB first, zero-padded at the end."""
    _check_integer(bits, "bits")
    if bits.dim() < 1 or bits.shape[-1] < 1:
        raise ValueError(f"bits must have shape (..., num_bits) with num_bits >= 1, got {tuple(bits.shape)}")
    pad = -bits.shape[-1] % 8
    if pad:
        bits = torch.cat([bits.long(), bits.new_zeros((*bits.shape[:-1], pad), dtype=torch.int64)], dim=-1)
    return to_decimal(bits, group_size=8).to(torch.uint8)


def unpack_bits(packed: Tensor, num_bits: int) -> Tensor:
    """uint8 (..., ceil(num_bits / 8)) -> (..., num_bits) int64: the inverse of pack_bits."""
    if not isinstance(packed, Tensor) or packed.dtype != torch.uint8:
        got = packed.dtype if isinstance(packed, Tensor) else type(packed).__name__
        raise TypeError(f"packed must be a uint8 tensor from pack_bits, got {got}")
    _check_count(num_bits, "num_bits", upper=2**62)
    nbytes = -(-num_bits // 8)
    if packed.dim() < 1 or packed.shape[-1] != nbytes:
        raise ValueError(f"packed must have shape (..., {nbytes}) for {num_bits} bits, got {tuple(packed.shape)}")
    return to_bits(packed, 8 * nbytes, group_size=8)[..., :num_bits]

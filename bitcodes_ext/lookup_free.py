"""Lookup-free quantization (LFQ, MAGVIT-v2) and binary spherical quantization (BSQ)."""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bits import to_bits, to_decimal
from .entropy import MAX_EXACT_BITS, binary_entropy
from .quantizer import CodebookUsage, _check_codes, codebook_usage
from .reference import compute_dtype

_MAX_BITS = 62  # codes are int64


class LookupFreeQuantizer(nn.Module):
    """Each of num_bits dimensions quantized to +-codebook_scale; the code is the bits, MSB first.

    forward(x) -> (quantized, codes, loss): x (..., features), quantized like x, codes (...)
    int64 in [0, 2^num_bits) with bit 0 (the first dimension) the most significant. With
    features != num_bits, Linear layers (with bias) project in and out, as in
    vector-quantize-pytorch's LFQ(dim=features, codebook_size=2**num_bits), whose state dicts
    load here. spherical=True is BSQ: z is l2-normalised and scaled by codebook_scale before
    the sign, and so is the quantized vector (entries +-codebook_scale / sqrt(num_bits)).

    The gradient is straight-through to z. In training,
    loss = entropy_weight * (per_sample - diversity_gamma * codebook) from binary_entropy of
    the softmax over the codes c with logits 2 * inv_temperature * <z, c>, which factorises into
    bit logits 4 * inv_temperature * |c_b| * z_b: exact, unlike the peer's sampled and clamped
    form; group_size sums the entropies of groups of bits instead (needed beyond 24 bits).
    Plus commitment_weight * mse(z, sg(quantized)) when commitment_weight > 0. In eval the loss
    is 0. The quantization runs in float32 (float64 for float64 z); quantized comes back in
    x's dtype.
    """

    def __init__(
        self,
        num_bits: int,
        features: Optional[int] = None,
        *,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        commitment_weight: float = 0.0,
        inv_temperature: float = 100.0,
        codebook_scale: float = 1.0,
        spherical: bool = False,
        group_size: Optional[int] = None,
    ):
        super().__init__()
        name = type(self).__name__
        if isinstance(num_bits, bool) or not isinstance(num_bits, int) or not 1 <= num_bits <= _MAX_BITS:
            raise ValueError(f"{name}: num_bits must be an integer in [1, {_MAX_BITS}], got {num_bits!r}")
        features = num_bits if features is None else features
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"{name}: features must be an integer >= 1 or None, got {features!r}")
        for key, value in (("inv_temperature", inv_temperature), ("codebook_scale", codebook_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name}: {key} must be a finite number > 0, got {value!r}")
        if group_size is None and entropy_weight and num_bits > MAX_EXACT_BITS:
            raise ValueError(
                f"{name}: the exact codebook entropy of {num_bits} bits needs 2^{num_bits} codes; pass "
                f"group_size <= {MAX_EXACT_BITS} (or entropy_weight=0)"
            )
        if group_size is not None and (
            isinstance(group_size, bool) or not isinstance(group_size, int) or not 1 <= group_size <= MAX_EXACT_BITS
        ):
            raise ValueError(f"{name}: group_size must be an integer in [1, {MAX_EXACT_BITS}] or None, got {group_size!r}")
        self.num_bits, self.features = num_bits, features
        self.entropy_weight, self.diversity_gamma = entropy_weight, diversity_gamma
        self.commitment_weight, self.inv_temperature = commitment_weight, inv_temperature
        self.codebook_scale, self.spherical, self.group_size = codebook_scale, spherical, group_size
        projected = features != num_bits
        self.project_in = nn.Linear(features, num_bits) if projected else nn.Identity()
        self.project_out = nn.Linear(num_bits, features) if projected else nn.Identity()

    @property
    def num_codes(self) -> int:
        return 1 << self.num_bits

    @property
    def code_value(self) -> float:
        """|c_b|: the magnitude of every entry of every code."""
        return self.codebook_scale / math.sqrt(self.num_bits) if self.spherical else self.codebook_scale

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # vector-quantize-pytorch's LFQ keeps its bit weights as a persistent buffer `mask`.
        state_dict.pop(prefix + "mask", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        self._check_x(x)
        projected = self.project_in(x)
        z = projected.to(compute_dtype(projected.dtype))
        if self.spherical:
            z = F.normalize(z, dim=-1) * self.codebook_scale
        bits = z.detach() > 0
        q = self._values(bits, z.dtype)
        codes = to_decimal(bits)
        # Straight-through: the value is exactly q (z - sg(z) is 0), the gradient reaches z.
        out = q + (z - z.detach()) if self.training else q
        quantized = self.project_out(out.to(projected.dtype)).to(x.dtype)
        return quantized, codes, self._loss(z, q)

    def _loss(self, z: Tensor, q: Tensor) -> Tensor:
        loss = z.new_zeros(())
        if not self.training:
            return loss
        if self.entropy_weight:
            logits = (4 * self.inv_temperature * self.code_value) * z
            per_sample, codebook = binary_entropy(logits, self.group_size)
            loss = loss + self.entropy_weight * (per_sample - self.diversity_gamma * codebook)
        if self.commitment_weight > 0:
            loss = loss + self.commitment_weight * F.mse_loss(z, q.detach())
        return loss

    def _values(self, bits: Tensor, dtype: torch.dtype) -> Tensor:
        value = torch.tensor(self.code_value, dtype=dtype, device=bits.device)
        return torch.where(bits, value, -value)

    def from_codes(self, codes: Tensor) -> Tensor:
        """codes (...) -> (..., features): the quantized vectors (forward's in eval)."""
        _check_codes(codes, self.num_codes, f"{type(self).__name__}.from_codes")
        weight = getattr(self.project_out, "weight", None)
        dtype = torch.float32 if weight is None else weight.dtype
        return self.project_out(self._values(to_bits(codes, self.num_bits).bool(), dtype))

    def usage(self, codes: Tensor) -> CodebookUsage:
        """CodebookUsage(fraction_used, perplexity) of the codes given, as 0-d tensors."""
        return codebook_usage(codes, self.num_codes)

    def _check_x(self, x: Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name}: x must be a floating-point tensor, got {got}")
        if x.dim() < 1 or x.shape[-1] != self.features:
            raise ValueError(f"{name}: x must have shape (..., {self.features}) (features = {self.features}), got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return (
            f"num_bits={self.num_bits}, features={self.features}, spherical={self.spherical}, "
            f"entropy_weight={self.entropy_weight}, inv_temperature={self.inv_temperature}"
            + ("" if self.group_size is None else f", group_size={self.group_size}")
        )

"""The Bitcodes layer: a drop-in for bitcodes_pytorch.Bitcodes."""

from typing import Tuple

import torch
from torch import Tensor, nn

from . import _validate, functional, reference


class Bitcodes(nn.Module):
    """Vector quantization with binary codes.

    Same constructor, parameter (`codebook`, (2 * num_bits, features), randn-initialised) and
    outputs as bitcodes_pytorch.Bitcodes, so state dicts load both ways. x may have any number
    of leading dims. One deliberate difference: in training, `bits` are the (noisy) bits that
    produced y, so from_bits(bits) == y in both modes. `bits_dtype` (int64 by default, as
    bitcodes-pytorch; or torch.uint8 / torch.bool) is the dtype of the returned bits.
    """

    def __init__(
        self,
        features: int,
        num_bits: int,
        temperature: float = 1.0,
        *,
        metric: str = "dot",
        backend: str = "auto",
        bits_dtype: torch.dtype = torch.int64,
    ):
        super().__init__()
        _validate.check_sizes(features, num_bits)
        _validate.check_temperature(temperature)
        _validate.check_metric(metric)
        _validate.check_bits_dtype(bits_dtype)
        if backend not in functional.BACKENDS:
            raise ValueError(f"Bitcodes: backend must be one of {functional.BACKENDS}, got {backend!r}")
        self.features, self.num_bits = features, num_bits
        self.temperature, self.metric, self.backend = temperature, metric, backend
        self.bits_dtype = bits_dtype
        self.codebook = nn.Parameter(torch.randn(2 * num_bits, features))

    def forward(self, x: Tensor, noise: Tensor = None) -> Tuple[Tensor, Tensor]:
        """x (..., features) -> (y (..., features), bits (..., num_bits) of bits_dtype)."""
        return functional.bitcodes(
            x,
            self.codebook,
            training=self.training,
            temperature=self.temperature,
            metric=self.metric,
            noise=noise,
            backend=self.backend,
            bits_dtype=self.bits_dtype,
        )

    def bit_logits(self, x: Tensor) -> Tensor:
        """x (..., features) -> (..., num_bits): the logits (x . w_i + bias_i) / temperature
        that the bits threshold (bias_i is 0 for metric="dot"), in float32 (float64 for float64
        x), differentiable in x and the codebook. With temperature 1 they are the log-odds of
        each training bit (its noise is logistic); binary_entropy(layer.bit_logits(x)) is then
        a code-usage regulariser. Their signs are forward's eval bits, up to near-ties."""
        _validate.check_x(x, self.codebook)
        acc = reference.compute_dtype(x.dtype)
        with functional.without_autocast(x.device):
            return reference.pair_logits(x.to(acc), self.codebook.to(acc), self.metric) / self.temperature

    def from_bits(self, bits: Tensor) -> Tensor:
        """bits (..., num_bits) of 0s and 1s (integer or bool) -> (..., features)."""
        return functional.decode(bits, self.codebook, backend=self.backend)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, num_bits={self.num_bits}, temperature={self.temperature}, "
            f"metric={self.metric!r}, backend={self.backend!r}"
            + ("" if self.bits_dtype == torch.int64 else f", bits_dtype={self.bits_dtype}")
        )

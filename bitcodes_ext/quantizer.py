"""A VQ-VAE quantizer layer and k-means, both on the fused vq() search."""

from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .vq import vq


def _all_reduce(*tensors: Tensor) -> None:
    """Sums statistics over data-parallel ranks, so every rank keeps the same EMA codebook."""
    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t)


class VectorQuantizer(nn.Module):
    """Nearest-code quantization with a straight-through gradient and the VQ-VAE losses.

    forward(x) -> (quantized, codes, loss): x (..., features), quantized like x, codes (...)
    int64. loss = |sg(x) - q|^2 (codebook; left out with ema=True, where an exponential moving
    average of the assigned vectors updates the codebook) + commitment_weight * |x - sg(q)|^2.
    With dead_code_threshold > 0, codes whose running usage falls below it are restarted on
    random vectors of the batch.
    """

    def __init__(
        self,
        num_codes: int,
        features: int,
        commitment_weight: float = 0.25,
        *,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_code_threshold: float = 0.0,
        backend: str = "auto",
    ):
        super().__init__()
        for name, value in (("num_codes", num_codes), ("features", features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VectorQuantizer: {name} must be an integer >= 1, got {value!r}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"VectorQuantizer: decay must be in (0, 1), got {decay!r}")
        self.num_codes, self.features = num_codes, features
        self.commitment_weight, self.ema, self.decay, self.eps = commitment_weight, ema, decay, eps
        self.dead_code_threshold, self.backend = dead_code_threshold, backend
        self.codebook = nn.Parameter(torch.randn(num_codes, features), requires_grad=not ema)
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", self.codebook.detach().clone())

    def from_codes(self, codes: Tensor) -> Tensor:
        return F.embedding(codes, self.codebook)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        flat = x.reshape(-1, self.features)
        codes, _ = vq(flat.detach(), self.codebook.detach().to(flat.dtype), backend=self.backend)
        if self.training and (self.ema or self.dead_code_threshold > 0):
            self._update_statistics(flat.detach(), codes)
        quantized = self.from_codes(codes).to(x.dtype).reshape(x.shape)
        loss = self.commitment_weight * F.mse_loss(x, quantized.detach())
        if not self.ema:
            loss = loss + F.mse_loss(quantized, x.detach())
        # Straight-through: the forward value is quantized, the gradient flows to x unchanged.
        return x + (quantized - x).detach(), codes.reshape(x.shape[:-1]), loss

    @torch.no_grad()
    def _update_statistics(self, flat: Tensor, codes: Tensor) -> None:
        counts = torch.bincount(codes, minlength=self.num_codes).to(self.cluster_size.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat.to(self.embed_sum.dtype))
        _all_reduce(counts, sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        if self.ema:
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
            self.codebook.data.copy_(self.embed_sum / smoothed.unsqueeze(1))
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(flat)

    def _restart_dead_codes(self, flat: Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold
        if not dead.any() or flat.shape[0] == 0:
            return
        picks = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
        fresh = flat[picks].to(self.codebook.dtype)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, src=0)  # every rank restarts on the same vectors
        self.codebook.data[dead] = fresh
        self.embed_sum[dead] = fresh
        self.cluster_size[dead] = 1.0

    def extra_repr(self) -> str:
        return f"num_codes={self.num_codes}, features={self.features}, ema={self.ema}"


def kmeans(observations: Tensor, k: int, iters: int = 20, seed: Optional[int] = 0, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Lloyd's algorithm on vq(): returns (codebook (k, D), distortion), the distortion being
    the mean Euclidean distance to the nearest code, as in scipy.cluster.vq.kmeans.

    Starts from k-means++ seeding (each new centre drawn with probability proportional to the
    squared distance to the nearest centre so far); a cluster that loses all its points keeps
    its previous centre.
    """
    if observations.dim() != 2 or observations.shape[0] < 1:
        raise ValueError(f"kmeans: observations must have shape (N, D) with N >= 1, got {tuple(observations.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= observations.shape[0]:
        raise ValueError(f"kmeans: k must be an integer in [1, N={observations.shape[0]}], got {k!r}")
    codebook = _kmeans_plus_plus(observations, k, seed)
    for _ in range(iters):
        codes, _ = vq(observations, codebook, backend=backend)
        counts = torch.bincount(codes, minlength=k)
        sums = torch.zeros_like(codebook).index_add_(0, codes, observations)
        updated = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype), codebook)
        if torch.equal(updated, codebook):
            break
        codebook = updated
    _, distances = vq(observations, codebook, backend=backend)
    return codebook, distances.mean()


def _kmeans_plus_plus(observations: Tensor, k: int, seed: Optional[int]) -> Tensor:
    generator = torch.Generator(device="cpu")
    if seed is not None:
        generator.manual_seed(seed)
    x = observations.double()
    picks = [int(torch.randint(0, x.shape[0], (1,), generator=generator))]
    nearest = (x - x[picks[0]]).square().sum(1)
    for _ in range(1, k):
        weights = nearest.cpu()
        index = int(torch.multinomial(weights, 1, generator=generator)) if weights.sum() > 0 else int(
            torch.randint(0, x.shape[0], (1,), generator=generator)
        )
        picks.append(index)
        nearest = torch.minimum(nearest, (x - x[index]).square().sum(1))
    return observations[torch.tensor(picks, device=observations.device)].clone()

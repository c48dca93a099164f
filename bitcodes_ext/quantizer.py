"""A VQ-VAE quantizer layer, k-means, and codebook usage, all on the fused vq() search."""

from typing import NamedTuple, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .vq import vq


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_reduce(*tensors: Tensor) -> None:
    """Sums statistics over data-parallel ranks, so every rank keeps the same EMA codebook."""
    if _distributed():
        for t in tensors:
            dist.all_reduce(t)


def _broadcast(*tensors: Tensor) -> None:
    """Rank 0's values everywhere: what a rank computed on its own is made identical."""
    if _distributed():
        for t in tensors:
            dist.broadcast(t, src=0)


def _gather_rows(rows: Tensor) -> Tensor:
    """(n_r, D) on each rank -> the (sum n_r, D) of every rank in rank order (all_gather needs
    equal shapes, so shorter batches are padded and trimmed)."""
    if not _distributed():
        return rows
    sizes = [torch.zeros(1, dtype=torch.int64, device=rows.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([rows.shape[0]], device=rows.device))
    longest = int(max(sizes))
    padded = rows.new_zeros(longest, rows.shape[1])
    padded[: rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(n)] for g, n in zip(gathered, sizes)])


def vq_vae_loss(x: Tensor, quantized: Tensor, commitment_weight: float, ema: bool) -> Tensor:
    """commitment_weight * |x - sg(q)|^2, plus the codebook term |sg(x) - q|^2 unless the
    codebook follows an EMA instead of its gradient."""
    loss = commitment_weight * F.mse_loss(x, quantized.detach())
    if not ema:
        loss = loss + F.mse_loss(quantized, x.detach())
    return loss


class CodebookUsage(NamedTuple):
    """How much of a codebook some codes use: `fraction_used`, the share of codes chosen at
    least once, and `perplexity`, exp of the entropy of the code histogram (num_codes when all
    codes are used equally often, 1 when one code takes everything)."""

    fraction_used: Tensor
    perplexity: Tensor


def _usage_from_counts(counts: Tensor) -> CodebookUsage:
    """counts (..., num_codes) -> CodebookUsage of tensors of shape (...)."""
    counts = counts.double()
    p = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    entropy = -(p * p.clamp(min=1e-300).log()).sum(-1)
    return CodebookUsage((counts > 0).double().mean(-1), entropy.exp())


def _check_codes(codes: Tensor, num_codes: int, name: str) -> None:
    if not isinstance(codes, Tensor) or codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        got = codes.dtype if isinstance(codes, Tensor) else type(codes).__name__
        raise TypeError(f"{name}: codes must be an integer tensor, got {got}")
    if codes.numel() and not (0 <= int(codes.min()) and int(codes.max()) < num_codes):
        raise ValueError(f"{name}: codes must lie in [0, {num_codes}), got values in [{int(codes.min())}, {int(codes.max())}]")


def codebook_usage(codes: Tensor, num_codes: int) -> CodebookUsage:
    """Usage of a codebook of num_codes codes by `codes` (any shape, all entries counted):
    CodebookUsage(fraction_used, perplexity) as 0-d float64 tensors. Counts only the codes
    given (under DDP, this rank's): no collective, so any rank may call it alone."""
    _check_codes(codes, num_codes, "codebook_usage")
    return _usage_from_counts(torch.bincount(codes.reshape(-1), minlength=num_codes))


class VectorQuantizer(nn.Module):
    """Nearest-code quantization with a straight-through gradient and the VQ-VAE losses.

    forward(x) -> (quantized, codes, loss): x (..., features), quantized like x, codes (...)
    int64. loss = |sg(x) - q|^2 (codebook; left out with ema=True, where an exponential moving
    average of the assigned vectors updates the codebook) + commitment_weight * |x - sg(q)|^2.
    With dead_code_threshold > 0, codes whose running usage falls below it are restarted on
    random vectors of the batch.

    kmeans_init=True sets the codebook to k-means centres of the first training batch (see
    init_kmeans); usage(codes) reports how much of the codebook some codes use.
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
        kmeans_init: bool = False,
        kmeans_iters: int = 20,
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
        self.kmeans_init, self.kmeans_iters = kmeans_init, kmeans_iters
        self.codebook = nn.Parameter(torch.randn(num_codes, features), requires_grad=not ema)
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", self.codebook.detach().clone())
        # In the state dict, so that a trained codebook is not re-initialised after loading.
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # State dicts saved before k-means initialisation existed hold trained codebooks.
        state_dict.setdefault(prefix + "initialized", torch.tensor(True))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def from_codes(self, codes: Tensor) -> Tensor:
        return F.embedding(codes, self.codebook)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        flat = x.reshape(-1, self.features)
        if self.kmeans_init and self.training and not bool(self.initialized):
            self.init_kmeans(flat)
        codes = self.nearest(flat)
        if self.training and self.tracks_statistics:
            self._update_statistics(flat.detach(), codes)
        quantized = self.from_codes(codes).to(x.dtype).reshape(x.shape)
        loss = vq_vae_loss(x, quantized, self.commitment_weight, self.ema)
        # Straight-through: the forward value is quantized, the gradient flows to x unchanged.
        return x + (quantized - x).detach(), codes.reshape(x.shape[:-1]), loss

    @property
    def tracks_statistics(self) -> bool:
        """Whether training updates cluster_size and embed_sum (for the EMA or the restarts)."""
        return self.ema or self.dead_code_threshold > 0

    def nearest(self, x: Tensor) -> Tensor:
        """(..., features) -> (...) int64: each row's nearest code, searched in x's dtype."""
        codes, _ = vq(x.detach(), self.codebook.detach().to(x.dtype), backend=self.backend)
        return codes

    def usage(self, codes: Tensor) -> CodebookUsage:
        """CodebookUsage(fraction_used, perplexity) of the codes given, as 0-d tensors."""
        return codebook_usage(codes, self.num_codes)

    @torch.no_grad()
    def init_kmeans(self, x: Tensor, iters: Optional[int] = None, seed: int = 0) -> Tensor:
        """Sets the codebook to the k-means centres of x (..., features) (kmeans(): k-means++
        seeding, then Lloyd on vq), and the usage statistics to how many rows each centre
        holds, as if x were one training batch; returns the rows' codes (N,).

        Under torch.distributed this is a collective: every rank passes its own batch, the
        centres are those of all ranks' batches together, and every rank ends with rank 0's.
        """
        rows = _gather_rows(x.detach().reshape(-1, self.features).to(self.codebook.dtype))
        return self._fit_kmeans(rows, self.kmeans_iters if iters is None else iters, seed)

    def _fit_kmeans(self, rows: Tensor, iters: int, seed: int) -> Tensor:
        """k-means on rows (every rank has the same rows); rank 0's centres are kept."""
        if rows.shape[0] < self.num_codes:
            raise ValueError(
                f"VectorQuantizer: k-means initialisation needs at least num_codes={self.num_codes} vectors, "
                f"got {rows.shape[0]}"
            )
        centres, _ = kmeans(rows, self.num_codes, iters=iters, seed=seed, backend=self.backend)
        _broadcast(centres)
        self.codebook.data.copy_(centres)
        codes = self.nearest(rows)
        self._reset_statistics(torch.bincount(codes, minlength=self.num_codes))
        return codes

    def _reset_statistics(self, counts: Tensor) -> None:
        """Usage statistics as if each code had been chosen counts times in one batch, so the
        EMA starts from the current codebook; marks the codebook initialised."""
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(self.codebook.detach() * self.cluster_size.unsqueeze(1))
        _broadcast(self.codebook.data, self.cluster_size, self.embed_sum)
        self.initialized.fill_(True)

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
        return f"num_codes={self.num_codes}, features={self.features}, ema={self.ema}, kmeans_init={self.kmeans_init}"


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
    norms = x.square().sum(1)

    def squared_distances_to(index: int) -> Tensor:
        # |x|^2 - 2 x.c + |c|^2: one matrix-vector product per centre instead of two (N, D)
        # temporaries (4.5x faster seeding, benchmarks/NOTES.md); float64 keeps it accurate.
        return (norms - 2 * (x @ x[index]) + norms[index]).clamp_(min=0)

    picks = [int(torch.randint(0, x.shape[0], (1,), generator=generator))]
    nearest = squared_distances_to(picks[0])
    for _ in range(1, k):
        weights = nearest.cpu()
        index = int(torch.multinomial(weights, 1, generator=generator)) if weights.sum() > 0 else int(
            torch.randint(0, x.shape[0], (1,), generator=generator)
        )
        picks.append(index)
        nearest = torch.minimum(nearest, squared_distances_to(index))
    return observations[torch.tensor(picks, device=observations.device)].clone()

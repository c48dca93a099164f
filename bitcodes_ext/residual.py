"""Residual vector quantization (RQ-VAE): each stage quantizes what the stages before it left."""

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from .quantizer import CodebookUsage, VectorQuantizer, _check_codes, _gather_rows, _usage_from_counts, vq_vae_loss


class ResidualVectorQuantizer(nn.Module):
    """num_quantizers stages of num_codes codes each: stage s quantizes, with the fused vq, the
    residual r_s = x - (q_0 + ... + q_{s-1}) that the stages before it left; quantized is
    q_0 + ... + q_{R-1}, so R stages of C codes reach C^R points with R * C vectors.

    forward(x) -> (quantized, codes, loss): x (..., features), quantized like x (with a
    straight-through gradient to x), codes (..., num_quantizers) int64, and loss the sum over
    stages of the VectorQuantizer loss of q_s against r_s (the codebook term |sg(r_s) - q_s|^2,
    left out with ema=True, plus commitment_weight * |r_s - sg(q_s)|^2, whose gradient reaches x
    through r_s). Residuals and the search run in x's dtype promoted with the codebook's
    (float32 for bfloat16/float16 input); quantized comes back in x's dtype. encode(x) gives
    the codes alone, from_codes(codes) decodes them (or a prefix of the stages).

    Each stage is a VectorQuantizer (self.quantizers; one shared by every stage with
    shared_codebook=True) and keeps its own EMA, dead-code restarts and DDP behaviour. In a
    training step every stage's codes are chosen first, then the statistics are updated, then
    quantized is read from the updated codebooks, so from_codes(codes) == quantized afterwards.
    kmeans_init=True initialises the codebooks stage by stage from the first training batch
    (init_kmeans); usage(codes) reports each stage's codebook usage.
    """

    def __init__(
        self,
        num_quantizers: int,
        num_codes: int,
        features: int,
        commitment_weight: float = 0.25,
        *,
        shared_codebook: bool = False,
        ema: bool = False,
        decay: float = 0.99,
        dead_code_threshold: float = 0.0,
        eps: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 20,
        backend: str = "auto",
    ):
        super().__init__()
        if isinstance(num_quantizers, bool) or not isinstance(num_quantizers, int) or num_quantizers < 1:
            raise ValueError(f"ResidualVectorQuantizer: num_quantizers must be an integer >= 1, got {num_quantizers!r}")
        self.num_quantizers, self.num_codes, self.features = num_quantizers, num_codes, features
        self.commitment_weight, self.ema, self.shared_codebook = commitment_weight, ema, shared_codebook
        self.kmeans_init, self.kmeans_iters = kmeans_init, kmeans_iters
        self.quantizers = nn.ModuleList(
            VectorQuantizer(
                num_codes, features, commitment_weight, ema=ema, decay=decay, eps=eps,
                dead_code_threshold=dead_code_threshold, kmeans_init=kmeans_init, backend=backend,
            )
            for _ in range(1 if shared_codebook else num_quantizers)
        )

    def stage(self, s: int) -> VectorQuantizer:
        """The VectorQuantizer of stage s (the same one for every stage with shared_codebook)."""
        return self.quantizers[0 if self.shared_codebook else s]

    @property
    def codebooks(self) -> Tensor:
        """(num_quantizers, num_codes, features): stage s's codebook at [s] (detached)."""
        return torch.stack([self.stage(s).codebook.detach() for s in range(self.num_quantizers)])

    @property
    def initialized(self) -> bool:
        return all(bool(q.initialized) for q in self.quantizers)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        self._check_x(x)
        flat = x.reshape(-1, self.features)
        if self.kmeans_init and self.training and not self.initialized:
            self.init_kmeans(flat)
        work = flat.to(self._compute_dtype(x))
        update = self.training and self.quantizers[0].tracks_statistics
        codes, residuals = self._encode(work.detach(), keep_residuals=update)
        if update:
            self._update_statistics(residuals, codes)
        loss, prefix = work.new_zeros(()), torch.zeros_like(work)
        for s in range(self.num_quantizers):
            q = self.stage(s).from_codes(codes[:, s]).to(work.dtype)
            loss = loss + vq_vae_loss(work - prefix, q, self.commitment_weight, self.ema)
            prefix = prefix + q.detach()
        quantized = prefix.to(x.dtype).reshape(x.shape)
        # Straight-through: the forward value is exactly the sum of the chosen codes (x - sg(x)
        # is 0, where x + sg(q - x) would round twice in bf16), the gradient reaches x unchanged.
        return quantized + (x - x.detach()), codes.reshape(*x.shape[:-1], self.num_quantizers), loss

    @torch.no_grad()
    def encode(self, x: Tensor, num_stages: Optional[int] = None) -> Tensor:
        """x (..., features) -> codes (..., r): forward's codes of the first r = num_stages
        (default: all) stages, without the losses, statistics or gradient (for inference and
        compression; from_codes decodes them)."""
        self._check_x(x)
        r = self.num_quantizers if num_stages is None else num_stages
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= self.num_quantizers:
            raise ValueError(f"ResidualVectorQuantizer.encode: num_stages must be in [1, {self.num_quantizers}], got {num_stages!r}")
        flat = x.reshape(-1, self.features).to(self._compute_dtype(x))
        codes, _ = self._encode(flat, keep_residuals=False, num_stages=r)
        return codes.reshape(*x.shape[:-1], r)

    def from_codes(self, codes: Tensor) -> Tensor:
        """codes (..., r) for the first r <= num_quantizers stages -> (..., features): the sum of
        the chosen codes, in the codebooks' dtype. Fewer stages decode a coarser x."""
        _check_codes(codes, self.num_codes, "ResidualVectorQuantizer.from_codes")
        if codes.dim() < 1 or not 1 <= codes.shape[-1] <= self.num_quantizers:
            raise ValueError(
                f"ResidualVectorQuantizer.from_codes: codes must have shape (..., r) with 1 <= r <= "
                f"num_quantizers={self.num_quantizers}, got {tuple(codes.shape)}"
            )
        out = self.stage(0).from_codes(codes[..., 0])
        for s in range(1, codes.shape[-1]):
            out = out + self.stage(s).from_codes(codes[..., s])
        return out

    def usage(self, codes: Tensor) -> CodebookUsage:
        """CodebookUsage(fraction_used, perplexity) of each stage's codes in codes
        (..., num_quantizers): tensors of shape (num_quantizers,), stage s's at [s]."""
        _check_codes(codes, self.num_codes, "ResidualVectorQuantizer.usage")
        if codes.dim() < 1 or codes.shape[-1] != self.num_quantizers:
            raise ValueError(
                f"ResidualVectorQuantizer.usage: codes must have shape (..., {self.num_quantizers}), got {tuple(codes.shape)}"
            )
        stages = codes.reshape(-1, self.num_quantizers) + self.num_codes * torch.arange(self.num_quantizers, device=codes.device)
        counts = torch.bincount(stages.reshape(-1), minlength=self.num_quantizers * self.num_codes)
        return _usage_from_counts(counts.reshape(self.num_quantizers, self.num_codes))

    @torch.no_grad()
    def init_kmeans(self, x: Tensor, iters: Optional[int] = None, seed: int = 0) -> Tensor:
        """k-means initialisation stage by stage: stage 0's codebook is the k-means of x
        (..., features), stage s's the k-means of the residuals stages 0..s-1 leave. With
        shared_codebook, the one codebook is the k-means of x, and its usage statistics count
        every stage's codes. Returns the codes (N, num_quantizers) of x's rows.

        Under torch.distributed this is a collective, as VectorQuantizer.init_kmeans: the
        batches of all ranks together, rank 0's codebooks everywhere.
        """
        iters = self.kmeans_iters if iters is None else iters
        rows = _gather_rows(x.detach().reshape(-1, self.features).to(self.quantizers[0].codebook.dtype))
        if self.shared_codebook:
            shared = self.quantizers[0]
            shared._fit_kmeans(rows, iters, seed)
            codes, _ = self._encode(rows, keep_residuals=False)
            shared._reset_statistics(torch.bincount(codes.reshape(-1), minlength=self.num_codes))
            return codes
        residual, stage_codes = rows, []
        for quantizer in self.quantizers:
            stage_codes.append(quantizer._fit_kmeans(residual, iters, seed))
            residual = residual - quantizer.codebook.detach()[stage_codes[-1]]
        return torch.stack(stage_codes, dim=1)

    def _encode(self, work: Tensor, keep_residuals: bool, num_stages: Optional[int] = None) -> Tuple[Tensor, List[Tensor]]:
        """Greedy residual search: (N, features) -> codes (N, r) of the first r stages (default
        all) and, if asked, the residual each stage searched."""
        residual, codes, residuals = work, [], []
        for s in range(self.num_quantizers if num_stages is None else num_stages):
            quantizer = self.stage(s)
            codes.append(quantizer.nearest(residual))
            if keep_residuals:
                residuals.append(residual)
            residual = residual - quantizer.codebook.detach().to(residual.dtype)[codes[-1]]
        return torch.stack(codes, dim=1), residuals

    def _update_statistics(self, residuals: List[Tensor], codes: Tensor) -> None:
        if self.shared_codebook:  # one update per step, from every stage's residuals and codes
            self.quantizers[0]._update_statistics(torch.cat(residuals), codes.t().reshape(-1))
            return
        for s, quantizer in enumerate(self.quantizers):
            quantizer._update_statistics(residuals[s], codes[:, s])

    def _compute_dtype(self, x: Tensor) -> torch.dtype:
        return torch.promote_types(x.dtype, self.quantizers[0].codebook.dtype)

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"ResidualVectorQuantizer: x must be a floating-point tensor, got {got}")
        if x.dim() < 1 or x.shape[-1] != self.features:
            raise ValueError(
                f"ResidualVectorQuantizer: x must have shape (..., {self.features}) (features = {self.features}), "
                f"got {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return (
            f"num_quantizers={self.num_quantizers}, num_codes={self.num_codes}, features={self.features}, "
            f"shared_codebook={self.shared_codebook}, ema={self.ema}, kmeans_init={self.kmeans_init}"
        )

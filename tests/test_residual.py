"""ResidualVectorQuantizer against a pure-torch greedy residual quantizer (cdist + argmin per
stage): codes, from_codes, the straight-through gradient and the losses, EMA and dead-code
restarts per stage, shared codebooks, leading dims, bf16, usage, bad input."""

import pytest
import torch
import torch.nn.functional as F

from bitcodes_ext import ResidualVectorQuantizer, codebook_usage


def greedy_codes(x, codebooks):
    """The RQ-VAE encoding in float64: stage s takes the exact argmin over cdist of the residual
    the stages before it left."""
    residual, codes = x.detach().reshape(-1, x.shape[-1]).double(), []
    for codebook in codebooks:
        c = torch.cdist(residual, codebook.detach().double()).argmin(1)
        codes.append(c)
        residual = residual - codebook.detach().double()[c]
    return torch.stack(codes, 1).reshape(*x.shape[:-1], len(codebooks))


def reference_rvq(x, codebooks, beta, ema=False):
    """quantized, codes and loss in plain torch, with autograd through the same expressions
    as the VQ-VAE: per stage |sg(r) - q|^2 (unless ema) + beta |r - sg(q)|^2."""
    codes = greedy_codes(x, codebooks)
    prefix, loss = torch.zeros_like(x), 0.0
    for s, codebook in enumerate(codebooks):
        q = codebook[codes[..., s]]
        r = x - prefix
        loss = loss + beta * F.mse_loss(r, q.detach())
        if not ema:
            loss = loss + F.mse_loss(q, r.detach())
        prefix = prefix + q.detach()
    return x + (prefix - x).detach(), codes, loss


def stage_codebooks(rvq):
    return [rvq.stage(s).codebook for s in range(rvq.num_quantizers)]


@pytest.mark.parametrize("shared", [False, True])
def test_codes_losses_and_gradients_match_the_reference(backend, shared):
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(3, 24, 8, commitment_weight=0.3, shared_codebook=shared, backend=backend)
    x = torch.randn(5, 40, 8, requires_grad=True)
    quantized, codes, loss = rvq(x)
    ref_quantized, ref_codes, ref_loss = reference_rvq(x, stage_codebooks(rvq), 0.3)
    assert codes.shape == (5, 40, 3) and codes.dtype == torch.int64
    assert torch.equal(codes, ref_codes)
    torch.testing.assert_close(quantized, ref_quantized)
    torch.testing.assert_close(loss, ref_loss)
    grad = torch.randn_like(quantized)
    params = list(rvq.parameters())
    assert len(params) == (1 if shared else 3)
    ours = torch.autograd.grad((quantized * grad).sum() + loss, [x, *params])
    ref = torch.autograd.grad((ref_quantized * grad).sum() + ref_loss, [x, *params])
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    # The straight-through part: quantized passes the incoming gradient to x unchanged.
    (straight,) = torch.autograd.grad((quantized * grad).sum(), x)
    assert torch.equal(straight, grad)


def test_each_stage_quantizes_the_residual_of_the_stages_before(native):
    rvq = ResidualVectorQuantizer(4, 16, 6).eval()
    x = torch.randn(300, 6)
    _, codes, _ = rvq(x)
    residual = x.clone()
    for s in range(4):
        codebook = rvq.stage(s).codebook.detach()
        assert torch.equal(codes[:, s], torch.cdist(residual.double(), codebook.double()).argmin(1))
        residual = residual - codebook[codes[:, s]]
    # More stages never leave a larger residual on average (each stage may pick 0-ish codes).
    errors = [(rvq.from_codes(codes[:, : s + 1]) - x).square().mean() for s in range(4)]
    assert errors[0] > errors[-1]


def test_from_codes_equals_quantized_and_decodes_prefixes(native):
    rvq = ResidualVectorQuantizer(3, 32, 5)
    x = torch.randn(2, 7, 5)
    quantized, codes, _ = rvq(x)
    assert torch.equal(rvq.from_codes(codes), quantized.detach())  # same sums in the same order
    assert torch.equal(rvq.encode(x), codes)
    books = rvq.codebooks
    assert books.shape == (3, 32, 5)
    expected = books[0][codes[..., 0]] + books[1][codes[..., 1]]
    assert torch.equal(rvq.encode(x, num_stages=2), codes[..., :2])
    torch.testing.assert_close(rvq.from_codes(codes[..., :2]), expected)


def test_any_leading_dims(native):
    rvq = ResidualVectorQuantizer(2, 10, 4).eval()
    x = torch.randn(2, 3, 5, 4)
    quantized, codes, _ = rvq(x)
    flat_quantized, flat_codes, _ = rvq(x.reshape(-1, 4))
    assert quantized.shape == x.shape and codes.shape == (2, 3, 5, 2)
    assert torch.equal(codes.reshape(-1, 2), flat_codes) and torch.equal(rvq.encode(x), codes)
    torch.testing.assert_close(quantized.reshape(-1, 4), flat_quantized)
    q1, c1, _ = rvq(x[0, 0, 0])  # a single vector: (features,) -> codes (num_quantizers,)
    assert q1.shape == (4,) and c1.shape == (2,)


def test_bfloat16_input_searches_float32_residuals(native):
    rvq = ResidualVectorQuantizer(3, 20, 8)
    x = torch.randn(64, 8).bfloat16().requires_grad_()
    quantized, codes, loss = rvq(x)
    assert quantized.dtype == torch.bfloat16 and loss.dtype == torch.float32
    # bf16 values are exact in float32: the codes are the greedy ones of x.float().
    assert torch.equal(codes, greedy_codes(x.float(), stage_codebooks(rvq)))
    assert torch.equal(quantized, rvq.from_codes(codes).bfloat16())
    (quantized.float().sum() + loss).backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def ema_step_reference(codebook, cluster_size, embed_sum, residual, codes, decay, eps):
    k = codebook.shape[0]
    counts = torch.bincount(codes, minlength=k).float()
    sums = torch.zeros_like(embed_sum).index_add_(0, codes, residual)
    cluster_size = decay * cluster_size + (1 - decay) * counts
    embed_sum = decay * embed_sum + (1 - decay) * sums
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + k * eps) * total
    return embed_sum / smoothed.unsqueeze(1), cluster_size, embed_sum


@pytest.mark.parametrize("shared", [False, True])
def test_ema_updates_every_stage_from_its_residuals(native, shared):
    rvq = ResidualVectorQuantizer(3, 12, 4, ema=True, decay=0.7, shared_codebook=shared)
    assert not any(p.requires_grad for p in rvq.parameters())
    x = torch.randn(200, 4)
    before = [(q.codebook.detach().clone(), q.cluster_size.clone(), q.embed_sum.clone()) for q in rvq.quantizers]
    codes = greedy_codes(x, stage_codebooks(rvq))  # chosen with the codebooks before the update
    quantized, got_codes, loss = rvq(x)
    assert torch.equal(got_codes, codes)
    residuals, residual = [], x.clone()
    for s in range(3):
        residuals.append(residual)
        residual = residual - before[0 if shared else s][0][codes[:, s]]
    if shared:
        expected = [ema_step_reference(*before[0], torch.cat(residuals), codes.t().reshape(-1), 0.7, 1e-5)]
    else:
        expected = [ema_step_reference(*before[s], residuals[s], codes[:, s], 0.7, 1e-5) for s in range(3)]
    for q, (codebook, cluster_size, embed_sum) in zip(rvq.quantizers, expected):
        torch.testing.assert_close(q.codebook.detach(), codebook)
        torch.testing.assert_close(q.cluster_size, cluster_size)
        torch.testing.assert_close(q.embed_sum, embed_sum)
    # quantized is read from the updated codebooks; the loss has only the commitment terms.
    torch.testing.assert_close(rvq.from_codes(got_codes), quantized)
    prefix, commitment = torch.zeros_like(x), 0.0
    for s in range(3):
        q = rvq.stage(s).codebook.detach()[got_codes[:, s]]
        commitment = commitment + 0.25 * F.mse_loss(x - prefix, q)
        prefix = prefix + q
    torch.testing.assert_close(loss, commitment)


def test_ema_training_recovers_a_two_level_structure(native):
    # x = coarse centre + fine offset: stage 0 should learn the coarse centres, stage 1 the offsets.
    generator = torch.Generator().manual_seed(0)
    coarse = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    fine = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    pick = torch.randint(0, 4, (2, 4000), generator=generator)
    x = coarse[pick[0]] + fine[pick[1]] + 0.05 * torch.randn(4000, 2, generator=generator)
    rvq = ResidualVectorQuantizer(2, 4, 2, ema=True, decay=0.8)
    with torch.no_grad():  # near, not at, the answer; the EMA has to move them there
        for q, start in zip(rvq.quantizers, (coarse + torch.tensor([0.8, -0.6]), 0.5 * fine + 0.1)):
            q.codebook.copy_(start)
            q.embed_sum.copy_(start)
    for _ in range(30):
        quantized, codes, _ = rvq(x)
    assert (quantized - x).square().mean() < 0.01  # about the noise, 2 * 0.05^2
    stage0, stage1 = rvq.codebooks
    assert torch.cdist(coarse, stage0).min(1).values.max() < 0.1
    assert torch.cdist(fine, stage1).min(1).values.max() < 0.1


def test_dead_codes_restart_on_their_stage_residuals(native):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(500, 3, generator=generator)
    rvq = ResidualVectorQuantizer(2, 6, 3, dead_code_threshold=0.5, decay=0.5)
    with torch.no_grad():
        rvq.stage(0).codebook.copy_(x[:6])  # each used (by itself at least): stage 0 never restarts
        rvq.stage(1).codebook[3:] = 1000.0  # never the nearest: usage 1 -> 0.5 -> 0.25, dead
    _, codes, _ = rvq(x)
    residual = x - rvq.stage(0).codebook.detach()[codes[:, 0]]
    for _ in range(3):
        rvq(x)
    far = rvq.stage(1).codebook.detach()[3:]
    assert far.abs().max() < 100  # restarted ...
    # ... on vectors of stage 1's residuals (stage 0's codebook is fixed without an optimiser step)
    assert torch.cdist(far, residual).min(1).values.max() < 1e-5
    assert (rvq.stage(1).cluster_size > 0).all()


def test_kmeans_init_stage_by_stage_finds_known_clusters(native):
    generator = torch.Generator().manual_seed(2)
    coarse = 20.0 * torch.eye(4)
    fine = torch.tensor([[1.0, 1.0, 0, 0], [-1.0, -1.0, 0, 0], [0, 0, 1.0, -1.0]])
    pick0, pick1 = torch.randint(0, 4, (3000,), generator=generator), torch.randint(0, 3, (3000,), generator=generator)
    x = coarse[pick0] + fine[pick1] + 0.02 * torch.randn(3000, 4, generator=generator)
    rvq = ResidualVectorQuantizer(2, 4, 4, kmeans_init=True).eval()
    rvq(x)
    assert not rvq.initialized  # only a training batch initialises
    rvq.train()
    _, codes, _ = rvq(x)
    assert rvq.initialized
    stage0, stage1 = rvq.codebooks
    # Stage 0: the coarse centres shifted by the mean offset; stage 1: the offsets about it.
    mean_fine = fine[pick1].mean(0)
    assert torch.cdist(coarse + mean_fine, stage0).min(1).values.max() < 0.1
    assert torch.cdist(fine - mean_fine, stage1).min(1).values.max() < 0.1
    assert (rvq.from_codes(codes) - x).square().mean() < 0.01
    usage = rvq.usage(codes)
    assert usage.fraction_used[0] == 1.0 and usage.fraction_used[1] >= 0.75
    # A later training batch does not initialise again.
    before = rvq.codebooks.clone()
    rvq(x + 5)
    assert torch.equal(rvq.codebooks, before)


def test_init_kmeans_method_returns_the_codes_and_sets_the_statistics(native):
    x = torch.randn(400, 3)
    rvq = ResidualVectorQuantizer(3, 8, 3, ema=True)
    codes = rvq.init_kmeans(x, iters=5)
    assert codes.shape == (400, 3) and rvq.initialized
    assert torch.equal(codes, greedy_codes(x, stage_codebooks(rvq)))
    for s, q in enumerate(rvq.quantizers):
        assert torch.equal(q.cluster_size, torch.bincount(codes[:, s], minlength=8).float())
        torch.testing.assert_close(q.embed_sum, q.codebook.detach() * q.cluster_size.unsqueeze(1))
    shared = ResidualVectorQuantizer(3, 8, 3, shared_codebook=True)
    codes = shared.init_kmeans(x, iters=5)
    assert torch.equal(shared.quantizers[0].cluster_size, torch.bincount(codes.reshape(-1), minlength=8).float())
    with pytest.raises(ValueError, match="needs at least num_codes=8 vectors, got 5"):
        ResidualVectorQuantizer(2, 8, 3).init_kmeans(torch.randn(5, 3))


def test_kmeans_init_is_kept_in_the_state_dict(native):
    rvq = ResidualVectorQuantizer(2, 4, 3, kmeans_init=True)
    rvq(torch.randn(50, 3))
    fresh = ResidualVectorQuantizer(2, 4, 3, kmeans_init=True)
    fresh.load_state_dict(rvq.state_dict())
    assert fresh.initialized
    fresh(torch.randn(50, 3) + 100)  # no re-initialisation on the loaded model's first batch
    assert torch.equal(fresh.codebooks, rvq.codebooks)


def test_usage_per_stage():
    rvq = ResidualVectorQuantizer(2, 4, 3)
    codes = torch.tensor([[0, 1], [0, 2], [1, 3], [1, 0]])
    usage = rvq.usage(codes)
    torch.testing.assert_close(usage.fraction_used, torch.tensor([0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(usage.perplexity, torch.tensor([2.0, 4.0], dtype=torch.float64))
    single = codebook_usage(torch.tensor([2, 2, 2]), 8)
    assert single.fraction_used.item() == 1 / 8 and single.perplexity.item() == pytest.approx(1.0)
    skewed = codebook_usage(torch.tensor([0, 0, 0, 1]), 2)  # exp(H) with p = (3/4, 1/4)
    assert skewed.perplexity.item() == pytest.approx(2.0 ** (0.75 * 0.415037 + 0.25 * 2), rel=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="num_quantizers must be an integer >= 1"):
        ResidualVectorQuantizer(0, 4, 3)
    with pytest.raises(ValueError, match="num_codes must be an integer >= 1"):
        ResidualVectorQuantizer(2, 0, 3)
    rvq = ResidualVectorQuantizer(2, 4, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        rvq(torch.randn(5, 4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        rvq(torch.ones(5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"codes must have shape \(\.\.\., r\) with 1 <= r <= num_quantizers=2"):
        rvq.from_codes(torch.zeros(5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        rvq.from_codes(torch.tensor([[0, 4]]))
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        rvq.from_codes(torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"num_stages must be in \[1, 2\], got 3"):
        rvq.encode(torch.randn(5, 3), num_stages=3)
    with pytest.raises(ValueError, match=r"codes must have shape \(\.\.\., 2\)"):
        rvq.usage(torch.zeros(5, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        codebook_usage(torch.tensor([-1]), 4)

"""VectorQuantizer (losses, gradients, EMA, dead-code restart) and kmeans."""

import pytest
import torch
import torch.nn.functional as F

from bitcodes_ext import VectorQuantizer, kmeans


def reference_vq_vae(x, codebook, beta):
    """The VQ-VAE step in plain torch: exact argmin over cdist."""
    codes = torch.cdist(x.detach().reshape(-1, x.shape[-1]).double(), codebook.detach().double()).argmin(1)
    q = codebook[codes].reshape(x.shape)
    loss = F.mse_loss(q, x.detach()) + beta * F.mse_loss(x, q.detach())
    return x + (q - x).detach(), codes.reshape(x.shape[:-1]), loss


def test_losses_and_gradients_match_reference(backend):
    layer = VectorQuantizer(50, 8, commitment_weight=0.3, backend=backend)
    x = torch.randn(4, 30, 8, dtype=torch.float64).float().requires_grad_()
    quantized, codes, loss = layer(x)
    ref_quantized, ref_codes, ref_loss = reference_vq_vae(x, layer.codebook, 0.3)
    assert torch.equal(codes, ref_codes)
    torch.testing.assert_close(quantized, ref_quantized)
    torch.testing.assert_close(loss, ref_loss)
    grad = torch.randn_like(quantized)
    ours = torch.autograd.grad((quantized * grad).sum() + loss, (x, layer.codebook))
    ref = torch.autograd.grad((ref_quantized * grad).sum() + ref_loss, (x, layer.codebook))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    assert torch.equal(layer.from_codes(codes), layer.codebook[codes])


def blobs(centres, per_blob=300, std=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    points = [c + std * torch.randn(per_blob, len(c), generator=generator) for c in torch.tensor(centres)]
    return torch.cat(points)


def test_ema_codebook_moves_to_the_cluster_means(native):
    data = blobs([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    layer = VectorQuantizer(3, 2, ema=True, decay=0.8)
    with torch.no_grad():
        layer.codebook.copy_(torch.tensor([[1.0, 1.0], [7.0, 1.0], [1.0, 7.0]]))
        layer.embed_sum.copy_(layer.codebook)
    assert not layer.codebook.requires_grad
    for _ in range(60):
        _, _, loss = layer(data)
    means = torch.stack([data[:300].mean(0), data[300:600].mean(0), data[600:].mean(0)])
    torch.testing.assert_close(layer.codebook, means, atol=1e-2, rtol=0)
    assert loss.item() < 0.25 * 0.3**2 * 1.5  # only the commitment term, about beta * std^2


def test_ema_step_matches_the_formula(native):
    # One step by hand: usage and sums decay towards the batch's counts and sums, and each code is
    # their ratio, the usage smoothed (Laplace): (n_k + eps) / (n + K eps) * n. A large eps shows it.
    data = blobs([[0.0, 0.0], [8.0, 0.0]], per_blob=50)
    layer = VectorQuantizer(3, 2, ema=True, decay=0.6, eps=0.1)
    start = torch.tensor([[0.5, 0.0], [7.5, 0.5], [50.0, 50.0]])
    with torch.no_grad():
        layer.codebook.copy_(start)
        layer.embed_sum.copy_(start)
    _, codes, _ = layer(data)
    assert torch.equal(codes, torch.arange(2).repeat_interleave(50))  # code 2 is unused
    counts = torch.bincount(codes, minlength=3).double()
    usage = 0.6 + 0.4 * counts
    sums = 0.6 * start.double() + 0.4 * torch.zeros(3, 2, dtype=torch.float64).index_add_(0, codes, data.double())
    n = usage.sum()
    expected = sums / ((usage + 0.1) / (n + 3 * 0.1) * n).unsqueeze(1)
    float32 = dict(rtol=1e-5, atol=1e-5)  # the layer's statistics are float32
    torch.testing.assert_close(layer.cluster_size.double(), usage, **float32)
    torch.testing.assert_close(layer.embed_sum.double(), sums, **float32)
    torch.testing.assert_close(layer.codebook.double(), expected, **float32)


def test_dead_codes_restart_on_batch_vectors(native):
    data = blobs([[0.0, 0.0], [8.0, 0.0]])
    layer = VectorQuantizer(4, 2, dead_code_threshold=0.5, decay=0.5)  # usage halves per unused step
    with torch.no_grad():
        layer.codebook.copy_(torch.tensor([[0.0, 0.0], [8.0, 0.0], [100.0, 100.0], [-100.0, 50.0]]))
    restarted = torch.zeros(4, dtype=torch.bool)
    for _ in range(10):
        before, usage = layer.codebook.detach().clone(), layer.cluster_size.clone()
        _, codes, _ = layer(data)
        usage = 0.5 * usage + 0.5 * torch.bincount(codes, minlength=4)  # exact: halves of integers
        dead = usage < 0.5
        restarted |= dead
        after = layer.codebook.detach()
        assert torch.equal(after[~dead], before[~dead]) and torch.equal(layer.cluster_size[~dead], usage[~dead])
        # A restarted code sits on a vector of the batch, its usage starts again at 1, its sum at itself.
        assert (after[dead].unsqueeze(1) == data.unsqueeze(0)).all(-1).any(-1).all()
        assert (layer.cluster_size[dead] == 1).all() and torch.equal(layer.embed_sum[dead], after[dead])
    assert torch.equal(restarted, torch.tensor([False, False, True, True]))  # the two far codes, only
    distance_to_data = torch.cdist(layer.codebook.detach(), data).min(1).values
    assert (distance_to_data[2:] < 1e-6).all()  # the far codes now sit on data points


def test_kmeans_recovers_known_clusters(native):
    centres = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]]
    data = blobs(centres, std=0.5)
    codebook, distortion = kmeans(data, 4, iters=50, seed=1)
    # every true centre has a found one within 0.1, and they are 4 different ones
    nearest = torch.cdist(torch.tensor(centres), codebook)
    assert (nearest.min(1).values < 0.1).all() and len(set(nearest.argmin(1).tolist())) == 4
    # mean distance of a 3-D Gaussian with std 0.5: 0.5 * sqrt(8 / pi) ~ 0.80
    assert 0.7 < distortion.item() < 0.9


def test_kmeans_bad_input():
    with pytest.raises(ValueError, match="k must be an integer"):
        kmeans(torch.randn(5, 2), 6)
    with pytest.raises(ValueError, match=r"observations must have shape \(N, D\)"):
        kmeans(torch.randn(5), 2)


def test_vector_quantizer_bad_sizes():
    with pytest.raises(ValueError, match="num_codes must be an integer >= 1"):
        VectorQuantizer(0, 4)
    with pytest.raises(ValueError, match="decay must be in"):
        VectorQuantizer(4, 4, ema=True, decay=1.0)

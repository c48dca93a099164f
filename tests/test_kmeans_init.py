"""k-means initialisation of VectorQuantizer (the method and the first-batch flag), and
codebook usage (fraction used, perplexity)."""

import pytest
import torch

from bitcodes_ext import CodebookUsage, VectorQuantizer, codebook_usage, kmeans

CENTRES = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0], [10.0, 10.0, 10.0]])


def blobs(per_blob=200, std=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([c + std * torch.randn(per_blob, 3, generator=generator) for c in CENTRES])


def assert_finds_the_centres(codebook, tolerance=0.1):
    nearest = torch.cdist(CENTRES, codebook)
    assert (nearest.min(1).values < tolerance).all()
    assert len(set(nearest.argmin(1).tolist())) == len(CENTRES)


def test_init_kmeans_finds_known_clusters(native):
    data = blobs()
    quantizer = VectorQuantizer(5, 3, ema=True)
    codes = quantizer.init_kmeans(data[torch.randperm(len(data))].reshape(10, 100, 3))
    assert codes.shape == (1000,) and bool(quantizer.initialized)
    assert_finds_the_centres(quantizer.codebook.detach())
    # Usage statistics as if the batch had been one step: 200 rows per centre.
    assert torch.equal(quantizer.cluster_size.sort().values, torch.full((5,), 200.0))
    torch.testing.assert_close(quantizer.embed_sum, quantizer.codebook.detach() * 200.0)
    # The EMA starts from the k-means codebook: one more step on the same data barely moves it.
    before = quantizer.codebook.detach().clone()
    quantizer(data)
    torch.testing.assert_close(quantizer.codebook.detach(), before, atol=1e-4, rtol=0)


def test_the_flag_initialises_from_the_first_training_batch_only(native):
    data = blobs(seed=1)
    quantizer = VectorQuantizer(5, 3, kmeans_init=True)
    assert not bool(quantizer.initialized)
    quantizer.eval()
    quantizer(data)  # eval batches never initialise
    assert not bool(quantizer.initialized)
    quantizer.train()
    quantized, codes, loss = quantizer(data)
    assert bool(quantizer.initialized)
    assert_finds_the_centres(quantizer.codebook.detach())
    assert loss.item() < 1.25 * 0.3**2 * 1.5  # codebook + commitment terms at about the blob variance
    usage = quantizer.usage(codes)
    assert usage.fraction_used.item() == 1.0 and usage.perplexity.item() == pytest.approx(5.0)
    after_first = quantizer.codebook.detach().clone()
    quantizer(data * 3)  # the second batch does not initialise again
    assert torch.equal(quantizer.codebook.detach(), after_first)
    # ... nor does a copy loaded from the state dict.
    copy = VectorQuantizer(5, 3, kmeans_init=True)
    copy.load_state_dict(quantizer.state_dict())
    copy(data + 50)
    assert torch.equal(copy.codebook.detach(), after_first)


def test_state_dicts_from_before_the_flag_load_as_initialised(native):
    old = VectorQuantizer(5, 3).state_dict()
    del old["initialized"]  # what a VectorQuantizer saved before kmeans_init existed holds
    quantizer = VectorQuantizer(5, 3, kmeans_init=True)
    quantizer.load_state_dict(old)
    assert bool(quantizer.initialized)
    quantizer(blobs())
    assert torch.equal(quantizer.codebook.detach(), old["codebook"])


def test_init_kmeans_matches_kmeans_itself(native):
    data = torch.randn(500, 4)
    quantizer = VectorQuantizer(16, 4)
    quantizer.init_kmeans(data, iters=7, seed=3)
    expected, _ = kmeans(data, 16, iters=7, seed=3)
    assert torch.equal(quantizer.codebook.detach(), expected)


def test_init_kmeans_needs_enough_vectors():
    with pytest.raises(ValueError, match="needs at least num_codes=16 vectors, got 10"):
        VectorQuantizer(16, 4, kmeans_init=True)(torch.randn(10, 4))


def test_codebook_usage():
    usage = codebook_usage(torch.tensor([[0, 1], [2, 3]]), 8)
    assert isinstance(usage, CodebookUsage)
    assert usage.fraction_used.item() == 0.5 and usage.perplexity.item() == pytest.approx(4.0)
    assert codebook_usage(torch.zeros(0, dtype=torch.int64), 4).fraction_used.item() == 0.0
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\), got values in \[0, 4\]"):
        codebook_usage(torch.tensor([0, 4]), 4)
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        codebook_usage(torch.tensor([0.0]), 4)

"""The CUDA vq kernels against an exact float64 search and the CPU kernel, on every CUDA route;
skipped without a GPU (run on the CUDA emulator in CI, as test_cuda_bitcodes.py explains)."""

import pytest
import torch

from bitcodes_ext import VectorQuantizer, kmeans, vq
from oracle import DTYPES, certify_codes, check_vq_rule, exact_distances, vq_tie_case

pytestmark = pytest.mark.usefixtures("cuda_route")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,k,d", [(1, 1, 1), (50, 7, 3), (333, 300, 17), (1000, 64, 64), (4097, 1000, 256)])
def test_matches_exact_search(cuda, n, k, d, dtype):
    observations, codebook = torch.randn(n, d, dtype=dtype), torch.randn(k, d, dtype=dtype)
    codes, dist = vq(observations.to(cuda), codebook.to(cuda), backend="native")
    assert codes.device.type == cuda.type and dist.dtype == dtype
    certify_codes(codes.cpu(), observations, codebook, rtol=1e-5 if dtype == torch.float32 else 1e-12)
    chosen = exact_distances(observations, codebook).gather(1, codes.cpu().reshape(-1, 1)).squeeze(1)
    torch.testing.assert_close(dist.cpu(), chosen.to(dtype))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(cuda, dtype):
    observations, codebook = torch.randn(3, 90, 24).to(dtype), torch.randn(200, 24).to(dtype)
    codes, dist = vq(observations.to(cuda), codebook.to(cuda), backend="native")
    certify_codes(codes.cpu(), observations, codebook, rtol=2e-5)
    chosen = exact_distances(observations, codebook).gather(1, codes.cpu().reshape(-1, 1)).reshape(3, 90)
    torch.testing.assert_close(dist.cpu(), chosen.to(dtype))


def test_seed_example_ties_and_nan(cuda):
    observations = torch.tensor([[1.2, 0.8], [2.4, 2.1], [1.5, 1.7]], device=cuda)
    codes, _ = vq(observations, torch.tensor([[1.0, 1.0], [2.5, 2.0]], device=cuda))
    assert codes.tolist() == [0, 1, 0]
    # Duplicates 64 codes apart land in different column lanes and code tiles.
    codebook = torch.randn(130, 4, device=cuda)
    codebook[70] = codebook[3]
    codebook[129] = codebook[3]
    observations = torch.cat([codebook[3:4] + 1e-3, torch.full((1, 4), float("nan"), device=cuda)])
    codes, dist = vq(observations, codebook)
    assert codes.tolist() == [3, 0] and torch.isnan(dist[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_equal_codes_tie_to_the_lowest_index_however_the_gemm_rounds(cuda, dtype):
    # Copies of codes 5 and 71 past the last whole block of 64 codes: route gemm's GEMM (on the
    # emulator, its stand-in, gemm_ops.h) may round those columns differently from the originals,
    # so their scores differ by an ulp either way; the equal distances must still give the
    # originals.
    codebook = torch.randn(130, 24).to(dtype)
    codebook[128], codebook[129] = codebook[5], codebook[71]
    bases = torch.tensor([5, 71]).repeat(200)
    observations = (codebook[bases].double() + 0.05 * torch.randn(400, 24, dtype=torch.float64)).to(dtype)
    # Distances summed alike for every code (equal codes: equal sums), unlike exact_distances.
    exact = (observations.double()[:, None] - codebook.double()[None]).square().sum(2).sqrt()
    assert torch.equal(exact.argmin(1), bases)
    codes, dist = vq(observations.to(cuda), codebook.to(cuda))
    assert torch.equal(codes.cpu(), bases)
    torch.testing.assert_close(dist.cpu(), exact.gather(1, bases.reshape(-1, 1)).squeeze(1).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_ties_go_to_the_lowest_index(cuda, dtype):
    # Exactly equal distances (small integers) to copies of a code 1 to 960 codes apart: in one
    # thread's columns (16 apart), across threads and across tiles of 64 codes.
    observations, codebook = vq_tie_case(300, 1000, 4, dtype)
    d = exact_distances(observations, codebook)
    assert ((d == d.min(1, keepdim=True).values).sum(1) > 1).float().mean() > 0.4
    codes, dist = vq(observations.to(cuda), codebook.to(cuda), backend="native")
    assert torch.equal(codes.cpu(), d.argmin(1))  # argmin: the first of equal minima
    torch.testing.assert_close(dist.cpu(), d.min(1).values.to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial_ties_and_nan(cuda, dtype):
    # The case of tests/test_vq.py's test of the same name, on each route (cuda_route).
    check_vq_rule(lambda o, c: vq(o.to(cuda), c.to(cuda), backend="native"), dtype)


@pytest.mark.real_gpu
def test_cuda_and_cpu_agree(cuda):
    observations, codebook = torch.randn(5000, 32), torch.randn(700, 32)
    cpu_codes, cpu_dist = vq(observations, codebook, backend="native")
    gpu_codes, gpu_dist = vq(observations.to(cuda), codebook.to(cuda), backend="native")
    same = cpu_codes == gpu_codes.cpu()
    assert same.float().mean() > 0.999
    certify_codes(gpu_codes.cpu(), observations, codebook, rtol=1e-5)
    torch.testing.assert_close(gpu_dist.cpu()[same], cpu_dist[same])


def test_opcheck_and_compile(cuda):
    observations, codebook = torch.randn(70, 9, device=cuda), torch.randn(33, 9, device=cuda)
    torch.library.opcheck(torch.ops.bitcodes_ext.vq, (observations, codebook))
    compiled = torch.compile(lambda o, c: vq(o, c), fullgraph=True)
    for a, b in zip(compiled(observations, codebook), vq(observations, codebook)):
        assert torch.equal(a, b)


@pytest.mark.real_gpu
def test_runs_where_n_times_k_does_not_fit(cuda):
    # 2^17 x 2^18 float32 distances would be 128 GiB, more than the GPU has; the op needs its
    # outputs, the codebook's norms, and on route gemm a score tile within 32 MiB.
    observations = torch.randn(1 << 17, 16, device=cuda)
    codebook = torch.randn(1 << 18, 16, device=cuda)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    codes, dist = vq(observations, codebook)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - start < (64 << 20)
    sample = slice(0, 500)
    certify_codes(codes[sample].cpu(), observations[sample].cpu(), codebook.cpu(), rtol=1e-5)


def test_quantizer_and_kmeans_on_cuda(cuda):
    quantizer = VectorQuantizer(64, 8).to(cuda)
    x = torch.randn(4, 50, 8, device=cuda, requires_grad=True)
    quantized, codes, loss = quantizer(x)
    loss.backward()
    assert quantized.device.type == cuda.type and x.grad is not None
    centers = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]], device=cuda)
    data = centers.repeat_interleave(200, 0) + 0.1 * torch.randn(600, 2, device=cuda)
    codebook, distortion = kmeans(data, 3, seed=0)
    assert codebook.device.type == cuda.type and distortion < 0.5

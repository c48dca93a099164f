"""vq(): parity with scipy.cluster.vq.vq and an exact float64 search, ties, NaN, bad input, memory."""

import subprocess
import sys
import textwrap

import pytest
import torch
from scipy.cluster.vq import vq as scipy_vq

from bitcodes_ext import vq
from oracle import DTYPES, certify_codes, check_vq_rule, exact_distances, vq_tie_case


def test_seed_example(backend):
    observations = torch.tensor([[1.2, 0.8], [2.4, 2.1], [1.5, 1.7]])
    codebook = torch.tensor([[1.0, 1.0], [2.5, 2.0]])
    codes, dist = vq(observations, codebook, backend=backend)
    assert codes.tolist() == [0, 1, 0]
    expected = torch.linalg.vector_norm(observations - codebook[codes], dim=1)
    torch.testing.assert_close(dist, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,k,d", [(1, 1, 1), (50, 7, 3), (333, 300, 17), (1000, 64, 64), (400, 1100, 9)])
def test_matches_scipy(backend, n, k, d, dtype):
    observations, codebook = torch.randn(n, d, dtype=dtype), torch.randn(k, d, dtype=dtype)
    codes, dist = vq(observations, codebook, backend=backend)
    scipy_codes, scipy_dist = scipy_vq(observations.numpy(), codebook.numpy())
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    certify_codes(codes, observations, codebook, rtol)
    certify_codes(torch.from_numpy(scipy_codes).long(), observations, codebook, rtol)
    same = codes.numpy() == scipy_codes
    assert same.mean() > 0.99  # codes differ only at near-ties
    torch.testing.assert_close(dist[torch.from_numpy(same)], torch.from_numpy(scipy_dist)[torch.from_numpy(same)].to(dtype))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_against_exact_search(backend, dtype):
    observations, codebook = torch.randn(3, 90, 24).to(dtype), torch.randn(200, 24).to(dtype)
    codes, dist = vq(observations, codebook, backend=backend)
    assert codes.shape == (3, 90) and dist.dtype == dtype
    certify_codes(codes, observations, codebook, rtol=2e-5)
    chosen = exact_distances(observations, codebook).gather(1, codes.reshape(-1, 1)).reshape(3, 90)
    torch.testing.assert_close(dist, chosen.to(dtype))


def test_ties_go_to_the_lowest_index(backend):
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    observations = torch.tensor([[1.0, 0.0], [0.5, 0.0], [-0.5, 0.0], [3.0, 0.0]])
    codes, _ = vq(observations, codebook, backend=backend)
    assert codes.tolist() == [1, 0, 0, 1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_ties_go_to_the_lowest_index_across_lanes_and_tiles(backend, dtype):
    observations, codebook = vq_tie_case(600, 1100, 4, dtype)
    d = exact_distances(observations, codebook)
    tied = (d == d.min(1, keepdim=True).values).sum(1) > 1
    assert tied.float().mean() > 0.4
    codes, dist = vq(observations, codebook, backend=backend)
    assert torch.equal(codes, d.argmin(1))  # argmin: the first of equal minima
    torch.testing.assert_close(dist, d.min(1).values.to(dtype))
    if dtype in (torch.float32, torch.float64):
        scipy_codes, _ = scipy_vq(observations.numpy(), codebook.numpy())
        assert torch.equal(codes, torch.from_numpy(scipy_codes).long())


@pytest.mark.parametrize("dtype", DTYPES)
def test_adversarial_ties_and_nan(backend, dtype):
    # Duplicates in one SIMD lane and in the tail tile, near-ties at every tile edge, NaN codes
    # and rows (oracle.vq_adversarial_case): the codes every route must agree on. The CUDA
    # routes run the same case in test_cuda_vq.py and test_cuda_mma.py.
    check_vq_rule(lambda o, c: vq(o, c, backend=backend), dtype)


@pytest.mark.parametrize("scale,offset", [(1.0, 100.0), (1e-22, 0.0)])
def test_distance_is_the_exact_one_rounded(backend, scale, offset):
    # The chosen code's distance is recomputed in double: within an ulp of the exact distance of
    # the float32 inputs, for long vectors far from the origin (a float32 sum of 1024 squares is
    # off by a few ulps) and for tiny ones (their float32 squares are subnormal and lose digits).
    observations = (offset + scale * torch.randn(300, 1024, dtype=torch.float64)).float()
    codebook = (offset + scale * torch.randn(20, 1024, dtype=torch.float64)).float()
    codes, dist = vq(observations, codebook, backend=backend)
    exact = (observations.double() - codebook.double()[codes]).square().sum(1).sqrt()
    torch.testing.assert_close(dist.double(), exact, rtol=torch.finfo(torch.float32).eps, atol=0)


def test_nan_rows_get_code_0_and_nan_distance(backend):
    observations = torch.randn(5, 4)
    observations[2, 1] = float("nan")
    codes, dist = vq(observations, torch.randn(9, 4) + 3, backend=backend)
    assert codes[2] == 0 and torch.isnan(dist[2])
    assert torch.isfinite(dist[[0, 1, 3, 4]]).all()


def test_leading_dims_and_empty(backend):
    codebook = torch.randn(10, 6)
    codes, dist = vq(torch.randn(2, 3, 6), codebook, backend=backend)
    assert codes.shape == dist.shape == (2, 3)
    codes, dist = vq(torch.randn(0, 6), codebook, backend=backend)
    assert codes.shape == dist.shape == (0,)


@pytest.mark.parametrize(
    "observations,codebook,error,match",
    [
        (torch.randn(4, 3), torch.randn(5, 2), ValueError, r"observations must have shape \(\.\.\., 2\)"),
        (torch.randn(4, 3), torch.randn(0, 3), ValueError, "num_codes >= 1"),
        (torch.ones(4, 3, dtype=torch.long), torch.randn(5, 3), TypeError, "observations must be a float"),
        (torch.randn(4, 3), torch.ones(5, 3, dtype=torch.int32), TypeError, "codebook must be a float"),
        (torch.randn(4, 3, device="meta"), torch.randn(5, 3), ValueError, "same device"),
        (torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3), TypeError, "same dtype"),
    ],
)
def test_bad_input(backend, observations, codebook, error, match):
    with pytest.raises(error, match=match):
        vq(observations, codebook, backend=backend)


def test_opcheck_and_compile(native):
    observations, codebook = torch.randn(70, 9), torch.randn(33, 9)
    torch.library.opcheck(torch.ops.bitcodes_ext.vq, (observations, codebook))
    compiled = torch.compile(lambda o, c: vq(o, c), fullgraph=True)
    for a, b in zip(compiled(observations, codebook), vq(observations, codebook)):
        assert torch.equal(a, b)


def test_peak_memory_stays_far_below_n_times_k(native):
    # 65536 x 8192 float32 distances would be 2 GiB; measure the process's peak RSS growth.
    script = textwrap.dedent(
        """
        import resource, torch, bitcodes_ext
        torch.manual_seed(0)
        x, c = torch.randn(65536, 16), torch.randn(8192, 16)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        codes, dist = bitcodes_ext.vq(x, c, backend="native")
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        """
    )
    growth_mb = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()[-1])
    assert growth_mb < 200, f"peak RSS grew by {growth_mb:.0f} MB (N x K would be 2048 MB)"

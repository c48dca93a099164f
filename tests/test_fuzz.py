"""Property-based: random shapes, dtypes, metrics and modes, compiled kernels against the oracle."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitcodes_ext import functional
from oracle import (
    DTYPES,
    acc_dtype,
    cancelling_noise,
    certify_bits,
    close_tol,
    decode_oracle,
    integer_case,
    margins,
    tie_free_noise,
    train_oracle,
)

# Deterministic examples for CI; `native` only checks that the kernels exist, so nothing in it
# needs resetting per example.
FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(FUZZ, max_examples=80)
@given(
    leading=st.lists(st.integers(0, 6), max_size=3),
    features=st.integers(1, 48),
    num_bits=st.integers(1, 40),
    dtype=st.sampled_from(DTYPES),
    metric=st.sampled_from(["dot", "euclidean"]),
    training=st.booleans(),
    temperature=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**31 - 1),
    integers=st.booleans(),
)
def test_kernels_match_oracle(native, leading, features, num_bits, dtype, metric, training, temperature, seed, integers):
    # integers: small-integer data (oracle.integer_case), where margins are exact and many are
    # exactly 0, so every bit must equal the oracle's, ties included (and y be exact in eval).
    torch.manual_seed(seed)
    if integers:
        x, codebook = integer_case(leading, features, num_bits, dtype)
    else:
        x = torch.randn(*leading, features, dtype=torch.float64).to(dtype)
        codebook = torch.randn(2 * num_bits, features, dtype=torch.float64).to(dtype)
    x.requires_grad_()
    codebook.requires_grad_()
    grad_y = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    tol = close_tol(dtype)
    acc = acc_dtype(dtype)

    if training:
        if integers:
            noise = cancelling_noise(x.detach(), codebook.detach(), metric)
        else:
            noise = tie_free_noise(x.detach(), codebook.detach(), metric, dtype=torch.float64)
        y, bits = functional.bitcodes(x, codebook, training=True, temperature=temperature, metric=metric,
                                      noise=noise, backend=native)
        dx, dc = torch.autograd.grad(y, (x, codebook), grad_y)
        y64, bits64, dx64, dc64 = train_oracle(x, codebook, noise, grad_y, temperature=temperature, metric=metric)
        assert torch.equal(bits, bits64)
        torch.testing.assert_close(y, y64.to(dtype), **tol)
        for got, want in ((dx, dx64), (dc, dc64)):
            scale = want.abs().max().item() if want.numel() else 0.0
            torch.testing.assert_close(got.double(), want, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1e-30))
    else:
        y, bits = functional.bitcodes(x, codebook, training=False, metric=metric, backend=native)
        if integers:
            assert torch.equal(bits, (margins(x.detach(), codebook.detach(), metric)[0] > 0).long())
        else:
            certify_bits(bits, x.detach(), codebook.detach(), accumulated_in=acc, metric=metric)
        (dc,) = torch.autograd.grad(y, (codebook,), grad_y)
        y64, dc64 = decode_oracle(bits, codebook, grad_y)
        if integers:
            assert torch.equal(y, y64.to(dtype))  # sums of at most 40 integers in -2..2: exact in every dtype
        torch.testing.assert_close(y, y64.to(dtype), **tol)
        scale = dc64.abs().max().item() if dc64.numel() else 0.0
        torch.testing.assert_close(dc.double(), dc64, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1e-30))
    assert y.shape == x.shape and bits.shape == (*leading, num_bits)


@settings(FUZZ, max_examples=60)
@given(
    leading=st.lists(st.integers(0, 40), max_size=2),
    num_codes=st.integers(1, 300),
    features=st.integers(1, 40),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_vq_matches_exact_search(native, leading, num_codes, features, dtype, seed):
    from bitcodes_ext import vq

    torch.manual_seed(seed)
    observations = torch.randn(*leading, features, dtype=torch.float64).to(dtype)
    codebook = torch.randn(num_codes, features, dtype=torch.float64).to(dtype)
    codes, dist = vq(observations, codebook, backend=native)
    assert codes.shape == dist.shape == tuple(leading) and dist.dtype == dtype
    d = torch.cdist(observations.double().reshape(-1, features), codebook.double())
    chosen = d.gather(1, codes.reshape(-1, 1)).squeeze(1)
    # A code other than the exact argmin only where the squared distances tie within rounding.
    scale = observations.double().reshape(-1, features).square().sum(1) + codebook.double().square().sum(1).max()
    assert ((chosen.square() - d.min(1).values.square()).abs() <= 2e-5 * scale).all()
    torch.testing.assert_close(dist.reshape(-1), chosen.to(dtype), **close_tol(dtype))

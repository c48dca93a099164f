"""Float64 ground truth for the parity tests, and the certification of near-ties.

A kernel in a lower precision may flip a bit whose margin x.w + bias + noise is within its
rounding error. Rather than loosen tolerances, every differing bit is certified: its float64
margin must be within the rounding bound of the dtype that computed it.
"""

import numpy as np
import torch

from bitcodes_ext import reference
from bitcodes_ext._validate import FLOAT_DTYPES

# Every floating dtype the ops accept, and the 16-bit ones (route mma's, the emulator's mma.sync).
DTYPES = list(FLOAT_DTYPES)
LOW_PRECISION = [torch.bfloat16, torch.float16]

# The dtype a kernel accumulates `dtype` inputs in: float64 for float64, float32 otherwise.
acc_dtype = reference.compute_dtype


def make(leading, features, num_bits, dtype):
    """Gaussian x (*leading, features) and codebook (2 * num_bits, features), drawn in float64 and
    rounded to `dtype`; `leading` is a token count or a tuple of leading dims."""
    leading = (leading,) if isinstance(leading, int) else tuple(leading)
    x = torch.randn(*leading, features, dtype=torch.float64).to(dtype)
    codebook = torch.randn(2 * num_bits, features, dtype=torch.float64).to(dtype)
    return x, codebook


def integer_case(leading, features, num_bits, dtype):
    """x and a codebook of small integers, with the exact-zero margins the reference defines.

    Every value is exact in every dtype, and so is every dot product, bias and sum of codes the
    kernels form from them in float32, in any order: a zero margin is exactly 0, and the bit
    must be 0. Zero margins come from zero tokens (every 5th), equal codebook pairs (every 3rd)
    and x orthogonal to a pair (frequent with values in -2..2).
    """
    leading = (leading,) if isinstance(leading, int) else tuple(leading)
    x = torch.randint(-2, 3, (*leading, features)).double()
    x.view(-1, features)[::5] = 0
    codebook = torch.randint(-2, 3, (2 * num_bits, features)).double()
    codebook[1::2][::3] = codebook[0::2][::3]
    return x.to(dtype), codebook.to(dtype)


def cancelling_noise(x, codebook, metric="dot", fraction=0.5):
    """Training noise for integer_case: -margin for a random `fraction` of the bits, so that
    z = margin + noise is exactly 0 there, and small integers elsewhere (float64)."""
    margin = reference.pair_logits(x.double(), codebook.double(), metric)
    other = torch.randint(-3, 4, margin.shape).double()
    return torch.where(torch.rand(margin.shape) < fraction, -margin, other)


# Relative rounding bound of a margin, by the dtype the margin was accumulated in.
MARGIN_RTOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 4e-3}


def margins(x, codebook, metric="dot", noise=None):
    """The float64 margin of each bit, and the scale its rounding error is relative to."""
    x64, c64 = x.double(), codebook.double()
    z = reference.pair_logits(x64, c64, metric)
    even, odd = c64[0::2], c64[1::2]
    scale = x64.abs() @ (even.abs() + odd.abs()).T
    if metric == "euclidean":
        scale = scale + 0.5 * (odd.square().sum(-1) + even.square().sum(-1))
    if noise is not None:
        z = z + noise.double()
        scale = scale + noise.double().abs()
    return z, scale


def certify_bits(bits, x, codebook, *, accumulated_in, metric="dot", noise=None):
    """Asserts bits == [margin > 0] except where the margin is within rounding; returns #flips."""
    z, scale = margins(x, codebook, metric, noise)
    expected = (z > 0).long()
    differ = bits.long() != expected
    bound = MARGIN_RTOL[accumulated_in] * scale
    uncertified = differ & (z.abs() > bound)
    assert not uncertified.any(), (
        f"{int(uncertified.sum())} bits differ from the float64 oracle outside the rounding bound; "
        f"worst margin {float(z.abs()[uncertified].max())}"
    )
    return int(differ.sum())


def tie_free_noise(x, codebook, metric="dot", *, dtype=None, gap=1e-2):
    """Logistic noise pushed at least gap * scale away from every tie, so bits are certain."""
    num_bits = codebook.shape[0] // 2
    u = torch.rand(*x.shape[:-1], num_bits, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    noise = (u / (1 - u)).log()
    z, scale = margins(x, codebook, metric, noise)
    push = gap * scale + 1e-3
    noise = torch.where(z.abs() < push, noise + torch.where(z >= 0, 1.0, -1.0) * 2 * push, noise)
    return noise.to(dtype or x.dtype)


def train_oracle(x, codebook, noise, grad_y, *, temperature, metric="dot"):
    """(y, bits, dx, dcodebook) in float64 from reference.py."""
    x64 = x.detach().double().requires_grad_()
    c64 = codebook.detach().double().requires_grad_()
    y, bits = reference.bitcodes(x64, c64, training=True, temperature=temperature, metric=metric, noise=noise.double())
    dx, dc = torch.autograd.grad(y, (x64, c64), grad_y.double())
    return y.detach(), bits, dx, dc


def decode_oracle(bits, codebook, grad_y=None):
    """y = sum_i c[2i + bits_i] in float64, and its codebook gradient."""
    c64 = codebook.detach().double().requires_grad_()
    y = reference.decode(bits, c64)
    if grad_y is None:
        return y.detach()
    (dc,) = torch.autograd.grad(y, (c64,), grad_y.double())
    return y.detach(), dc


def backward_oracle(grad_y, x, codebook, z, *, temperature, metric="dot"):
    """The training backward for a given z (the op's saved margins), in float64 from the math:
    p = sigmoid(z / tau), r = p(1 - p) (g . W^T) / tau, dx = r . W, dc[2i+1] = sum(bit g + r x),
    dc[2i] = sum((1 - bit) g - r x) (the euclidean bias adds -+ sum(r) c).

    Returns dx, dc and two pairs of magnitudes for the rounding bounds of a kernel that works in
    a precision of unit roundoff u: `sums` (dx, dc), the sums of the terms' magnitudes, which a
    float sum of n terms errs by at most ~n u times; `r_error` (dx, dc), what u times these
    bound r's own rounding carries into dx and dc (p(1 - p) from z / tau, and 1 - p cancelling
    next to a saturated p)."""
    c, g, x64, z = codebook.double(), grad_y.double(), x.double(), z.double()
    features = c.shape[1]
    g, x64 = g.reshape(-1, features), x64.reshape(-1, features)
    z = z.reshape(g.shape[0], -1)
    even, odd = c[0::2], c[1::2]
    p = torch.sigmoid(z / temperature)
    u = g @ (odd - even).T
    r = p * (1 - p) * u / temperature
    bits = (z > 0).double()
    dx = r @ (odd - even)
    dc = torch.empty_like(c)
    dc[1::2] = bits.T @ g + r.T @ x64
    dc[0::2] = (1 - bits).T @ g - r.T @ x64
    if metric == "euclidean":
        dc[1::2] -= r.sum(0).unsqueeze(1) * odd
        dc[0::2] += r.sum(0).unsqueeze(1) * even

    def carried(per_bit, g_terms):
        dx_terms = per_bit @ (odd.abs() + even.abs())
        dc_terms = (g_terms + per_bit.T @ x64.abs()).repeat_interleave(2, 0)
        if metric == "euclidean":
            dc_terms = dc_terms + per_bit.sum(0).repeat_interleave(2, 0).unsqueeze(1) * c.abs()
        return dx_terms.reshape(x.shape), dc_terms

    r_error = r.abs() * ((z / temperature).abs() + 4) + 2 * u.abs() / temperature
    return dx.reshape(x.shape), dc, carried(r.abs(), g.abs().sum(0)), carried(r_error, 0)


def close_tol(dtype):
    """assert_close tolerances for values computed in `dtype` against a float64 oracle."""
    return {
        torch.float64: dict(rtol=1e-10, atol=1e-10),
        torch.float32: dict(rtol=1e-5, atol=2e-5),
        torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
        torch.float16: dict(rtol=2e-3, atol=2e-3),
    }[dtype]


def assert_within(actual, expected, bound, dtype):
    """|actual - expected| <= bound + the dtype's tolerance: for results whose rounding error
    is relative to a known magnitude (`bound` holds that part) rather than to the result."""
    tol = close_tol(dtype)
    excess = (actual.double() - expected).abs() - (bound + tol["atol"] + tol["rtol"] * expected.abs())
    assert (excess <= 0).all(), f"{int((excess > 0).sum())} elements outside the bound; worst excess {excess.max().item():.3g}"


def sum_bound(bits, codebook, dtype):
    """Rounding bound of y = sum_i c[2i + bit_i] summed in float32/float64: the dtype's relative
    tolerance times sum_i |c[2i + bit_i]| (a float sum errs relative to its terms, not to y)."""
    return close_tol(dtype)["rtol"] * reference.decode(bits, codebook.detach().double().abs())


def straight_through_bounds(x, codebook, noise, grad_y, *, temperature, metric, accumulated_in):
    """How far dx and dcodebook may move because z = margin + noise carries the rounding of
    `accumulated_in`: |d/dz p(1-p)| <= 0.1 / tau, so |delta r| <= 0.1 |u| |delta z| / tau^2,
    and the gradients move by |delta r| . |W| and |delta r|^T |x| (+ the euclidean rsum term)."""
    z, scale = margins(x, codebook, metric, noise)
    c = codebook.detach().double()
    w = c[1::2] - c[0::2]
    features = c.shape[1]
    u = grad_y.double().reshape(-1, features) @ w.T
    dr = 0.1 * u.abs() * (MARGIN_RTOL[accumulated_in] * scale).reshape(u.shape) / temperature**2
    dx = (dr @ w.abs()).reshape(x.shape)
    drx = dr.T @ x.detach().double().reshape(-1, features).abs()
    dc = torch.empty_like(c)
    dc[1::2], dc[0::2] = drx, drx
    if metric == "euclidean":
        dc[1::2] += dr.sum(0, keepdim=True).T * c[1::2].abs()
        dc[0::2] += dr.sum(0, keepdim=True).T * c[0::2].abs()
    return dx, dc


def exact_distances(observations, codebook):
    """Float64 distances from every observation to every code: the vq ground truth for small cases."""
    return torch.cdist(observations.double().reshape(-1, codebook.shape[1]), codebook.double())


def certify_codes(codes, observations, codebook, rtol):
    """Asserts vq codes differ from the exact argmin only where the two squared distances are
    within rounding; returns how many differ."""
    d = exact_distances(observations, codebook)
    chosen = d.gather(1, codes.reshape(-1, 1)).squeeze(1)
    best = d.min(1).values
    scale = observations.double().reshape(-1, codebook.shape[1]).square().sum(1) + codebook.double().square().sum(1).max()
    assert ((chosen.square() - best.square()).abs() <= rtol * scale).all()
    return int((codes.reshape(-1) != d.argmin(1)).sum())


def philox_logistic_noise(seed, offset, tokens, num_bits, dtype=torch.float64):
    """The training noise the kernels draw (csrc/cpu/noise.h, csrc/cuda/noise.cuh): bit j of
    token t is log(u / (1 - u)) for u from output j % 4 of Philox4x32-10 with key `seed`,
    counter (offset / 4 + j / 4, t); ratio and log in `dtype`. Written from the Philox paper's
    definition, as torch's philox_engine implements it, independently of our kernels."""
    mask = np.uint64(0xFFFFFFFF)
    t = np.arange(tokens, dtype=np.uint64)[:, None]
    block = np.uint64(offset // 4) + np.arange((num_bits + 3) // 4, dtype=np.uint64)[None, :]
    c0, c1 = block & mask, block >> np.uint64(32)
    c2, c3 = t & mask, t >> np.uint64(32)
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for round_ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & mask, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & mask
        if round_ < 9:
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
    draws = np.stack([c0, c1, c2, c3], axis=-1).reshape(tokens, -1)[:, :num_bits]
    u = torch.from_numpy(((draws >> np.uint64(9)).astype(np.float64) + 0.5) / (1 << 23)).to(dtype)
    return (u / (1 - u)).log()


# Index distances at which vq_tie_case duplicates a code: the same SIMD lane (4, 8 and 16 lanes,
# and CUDA's 16 column lanes), other lanes, and past a tile of codes (CPU: 10 panels of 3 vectors,
# 120 to 480 codes by dtype and ISA; CUDA: 64).
TIE_OFFSETS = (1, 2, 3, 4, 5, 8, 12, 16, 24, 32, 48, 64, 120, 128, 240, 241, 480, 481, 960)


def vq_tie_case(num_observations, num_codes, features, dtype):
    """vq data of small integers (every score exact in every dtype) with exactly equal distances:
    codes 3, 150 and 700 (where they exist) copied TIE_OFFSETS further on, and observations near
    them (and anywhere), often also equally far from distinct codes. The exact answer is the
    lowest index of the nearest codes."""
    codebook = torch.randint(-8, 9, (num_codes, features)).double()
    for base in (3, 150, 700):
        for offset in TIE_OFFSETS:
            if base + offset < num_codes:
                codebook[base + offset] = codebook[base]
    bases = torch.tensor([b for b in (3, 150, 700) if b < num_codes])
    near = codebook[bases[torch.randint(0, len(bases), (num_observations // 2,))]]
    near = near + torch.randint(-1, 2, near.shape)
    anywhere = torch.randint(-9, 10, (num_observations - len(near), features)).double()
    return torch.cat([near, anywhere]).to(dtype), codebook.to(dtype)


# Code indices just past a change of lane or tile on some route: SIMD lanes of 4, 8 and 16 and
# CUDA's 16 column lanes; CPU panels of 3 vectors (12 to 48 codes) and code tiles of 10 panels
# (120 to 480 codes); route cores' 64-code tiles and the emulated GEMM's blocks of 64; route
# mma's 128-code tiles; the 100-code tiles of route gemm when chunked (tests/conftest.py).
TILE_EDGES = (4, 8, 12, 16, 24, 32, 48, 64, 96, 100, 120, 128, 192, 200, 240, 256, 300, 360, 384, 400, 480, 512)


def vq_adversarial_case(dtype, num_codes=520, features=8, seed=0):
    """vq inputs built to break a selection rule, on every route and backend:

    - near-ties across every tile edge e: an observation p, and codes e - 1 and e at p + u and
      p - u + delta u (u a unit vector), with delta cycling through 0 (an exact tie: e - 1 must
      win), 2.5 times the certified bound either way (the nearer must win) and a quarter of it
      (either may), as closely as `dtype` can represent it;
    - exact duplicates of codes 1 and 2 one SIMD lane, one panel and one tile further on, and in
      the last two codes (the tail tile), with observations at and around them;
    - NaN codes at 0 and near the end (never chosen), and NaN observation rows (code 0).

    Values are small integers except the deltas, so equal distances are equal in every dtype.
    Returns observations (N, features) and codebook (num_codes, features) in `dtype`."""
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randint(-8, 9, (num_codes, features), generator=generator).double()
    edges = [e for e in TILE_EDGES if e < num_codes - 3]
    points = torch.randint(-6, 7, (len(edges), features), generator=generator).double()
    unit = torch.zeros(features, dtype=torch.float64)
    unit[0] = 1
    for edge, point in zip(edges, points):
        codebook[edge - 1], codebook[edge] = point + unit, point - unit
    for base in (1, 2):
        for offset in (4, 8, 16, 48, 64, 128, 480):
            if base + offset < num_codes - 3:
                codebook[base + offset] = codebook[base]
    codebook[-1], codebook[-2] = codebook[1], codebook[2]
    # The bound assert_vq_selection certifies for each near-tie row.
    bounds = MARGIN_RTOL[acc_dtype(dtype)] * (points.square().sum(1) + codebook.square().sum(1).max())
    for i, (edge, bound) in enumerate(zip(edges, bounds)):
        codebook[edge, 0] += (0.0, 2.5, -2.5, 0.25, -0.25)[i % 5] * float(bound)
    codebook[0, 1] = codebook[-3, 2] = float("nan")
    bases = codebook[[1, 2]].repeat(20, 1)
    around = bases + torch.randint(-1, 2, bases.shape, generator=generator)
    anywhere = torch.randint(-9, 10, (40, features), generator=generator).double()
    nan_rows = torch.full((2, features), float("nan"))
    observations = torch.cat([points, bases, around, nan_rows[:1], anywhere, nan_rows[1:]])
    return observations.to(dtype), codebook.to(dtype)


def assert_vq_selection(codes, observations, codebook, rtol):
    """vq's selection rule against float64 distances of the given (rounded) inputs:
    a NaN row gets code 0; otherwise the chosen code is within the certified bound of the
    nearest (a NaN code never is), and no lower code is exactly as far (equal distances go to
    the lowest code). Where one code is nearer than every other by more than the bound, this
    leaves exactly one answer, so routes that pass agree there. Returns how many rows that
    pins and how many hold an exact tie, so that a test can check its input is adversarial."""
    features = codebook.shape[1]
    x, c = observations.double().reshape(-1, features), codebook.double()
    codes = codes.reshape(-1).cpu()
    nan_rows = x.isnan().any(1)
    assert (codes[nan_rows] == 0).all(), f"NaN rows got codes {codes[nan_rows].tolist()}"
    x, codes = x[~nan_rows], codes[~nan_rows]
    d2 = (x[:, None] - c[None]).square().sum(2).nan_to_num(nan=float("inf"))  # the same sum for equal codes
    chosen = d2.gather(1, codes[:, None]).squeeze(1)
    best = d2.min(1).values
    finite = torch.isfinite(c).all(1)
    bound = rtol * (x.square().sum(1) + c[finite].square().sum(1).max())
    far = chosen - best > bound
    assert not far.any(), f"{int(far.sum())} rows chose a code beyond the bound; rows {far.nonzero().flatten()[:10].tolist()}"
    lower = torch.arange(c.shape[0])[None] < codes[:, None]
    tied_lower = ((d2 == chosen[:, None]) & lower).any(1)
    assert not tied_lower.any(), f"{int(tied_lower.sum())} rows chose a code whose distance a lower code equals"
    at_best = d2 <= (best + bound)[:, None]
    distinct = (d2 != best[:, None]) & at_best
    pinned = int((~distinct.any(1)).sum())
    exact_ties = int(((d2 == best[:, None]).sum(1) > 1).sum())
    return pinned, exact_ties


def check_vq_rule(run_vq, dtype):
    """vq_adversarial_case through run_vq(observations, codebook) -> (codes, dist), the way each
    route's test calls it: the codes follow the selection rule (assert_vq_selection), NaN rows
    get distance NaN, and the case pins most rows and holds exact ties."""
    observations, codebook = vq_adversarial_case(dtype)
    codes, dist = (t.cpu() for t in run_vq(observations, codebook))
    pinned, exact_ties = assert_vq_selection(codes, observations, codebook, rtol=MARGIN_RTOL[acc_dtype(dtype)])
    assert torch.isnan(dist[observations.isnan().any(1)]).all()
    assert pinned > 0.9 * len(observations) and exact_ties > 40, (pinned, exact_ties)


def code_probabilities(logits):
    """Float64 P(code c) for every token and every code c of the B bits (N, 2^B), bit 0 the
    most significant: the enumeration that binary_entropy avoids (small B only)."""
    l = logits.double().reshape(-1, logits.shape[-1])
    bits = ((torch.arange(1 << l.shape[1]).unsqueeze(1) >> torch.arange(l.shape[1] - 1, -1, -1)) & 1).double()
    # log P = sum_b c_b log sigmoid(l_b) + (1 - c_b) log sigmoid(-l_b): exact at saturation.
    return torch.exp(torch.nn.functional.logsigmoid(l) @ bits.T + torch.nn.functional.logsigmoid(-l) @ (1 - bits).T)


def binary_entropy_oracle(logits, group_size=None):
    """(per_sample, codebook) of binary_entropy by enumerating every code in float64."""
    l = logits.double().reshape(-1, logits.shape[-1])
    p1, p0 = torch.sigmoid(l), torch.sigmoid(-l)
    per_sample = -(torch.special.xlogy(p1, p1) + torch.special.xlogy(p0, p0)).sum(1).mean()
    group_size = group_size or l.shape[1]
    codebook = l.new_zeros(())
    for start in range(0, l.shape[1], group_size):
        a = code_probabilities(l[:, start : start + group_size]).mean(0)
        codebook = codebook - (a * torch.where(a > 0, a, torch.ones_like(a)).log()).sum()
    return per_sample, codebook

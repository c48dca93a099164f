"""binary_entropy: exact per-sample and codebook entropies of independent bits, against a float64
enumeration of every code; the two-half tables, the chunk loop, saturation, memory, the ops."""

import subprocess
import sys
import textwrap

import pytest
import torch

from bitcodes_ext import binary_entropy, code_tables
from oracle import binary_entropy_oracle, code_probabilities

# (leading dims, bits, group_size): odd and even widths, groups with a shorter last one, one bit.
CASES = [((37,), 1, None), ((5, 7), 2, None), ((64,), 5, None), ((3, 11), 8, None), ((50,), 9, None),
         ((41,), 7, 3), ((40,), 10, 4), ((33,), 6, 6), ((17,), 11, 1)]


def objective(per_sample, codebook):
    return per_sample - 0.7 * codebook


@pytest.mark.parametrize("leading,bits,group_size", CASES)
def test_values_and_gradients_equal_the_enumeration(leading, bits, group_size):
    logits = (torch.randn(*leading, bits, dtype=torch.float64) * 3).requires_grad_()
    ours = binary_entropy(logits, group_size)
    truth = binary_entropy_oracle(logits, group_size)
    for a, b in zip(ours, truth):
        assert a.shape == () and a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(objective(*ours), logits)
    (expected,) = torch.autograd.grad(objective(*truth), logits)
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-14)


def test_float32_is_computed_in_float32_within_its_rounding():
    logits = (torch.randn(300, 10) * 2).requires_grad_()
    per_sample, codebook = binary_entropy(logits)
    assert per_sample.dtype == codebook.dtype == torch.float32
    truth = binary_entropy_oracle(logits.detach())
    torch.testing.assert_close(per_sample.double(), truth[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(codebook.double(), truth[1], rtol=1e-5, atol=0)
    (grad,) = torch.autograd.grad(objective(per_sample, codebook), logits)
    logits64 = logits.detach().double().requires_grad_()
    (expected,) = torch.autograd.grad(objective(*binary_entropy_oracle(logits64)), logits64)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_logits_are_accepted_and_upcast(dtype):
    logits = (torch.randn(64, 6) * 2).to(dtype).requires_grad_()
    ours = binary_entropy(logits)
    upcast = binary_entropy(logits.detach().float())
    for a, b in zip(ours, upcast):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    objective(*ours).backward()
    assert logits.grad.dtype == dtype and logits.grad.isfinite().all()


def test_usage_sums_are_in_code_order_msb_first():
    """The op's sums, divided by the token count, are the mean probability of each code in
    code order (bit 0 the most significant), group after group."""
    logits = torch.randn(29, 7, dtype=torch.float64) * 2
    logits[:, 0] += 6  # bit 0 mostly 1: the upper half of the codes holds most of the mass
    sums = torch.ops.bitcodes_ext.code_usage_sums(logits, 7)
    torch.testing.assert_close(sums / 29, code_probabilities(logits).mean(0), rtol=1e-12, atol=1e-15)
    assert sums[64:].sum() > 0.9 * 29
    grouped = torch.ops.bitcodes_ext.code_usage_sums(logits, 3)
    parts = [code_probabilities(logits[:, s : s + 3]).sum(0) for s in (0, 3, 6)]
    torch.testing.assert_close(grouped, torch.cat(parts), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bits", [9, 6])
def test_chunks_cover_every_token_once(monkeypatch, bits):
    """Chunks of a few tokens, the last one partial, give the values and gradients of one chunk."""
    logits = (torch.randn(23, bits, dtype=torch.float64) * 2).requires_grad_()
    whole = binary_entropy(logits)
    (whole_grad,) = torch.autograd.grad(objective(*whole), logits)
    width = (1 << (bits // 2)) + (1 << (bits - bits // 2))
    monkeypatch.setitem(code_tables.CHUNK_TABLE_ENTRIES, "cpu", 5 * width)  # chunks of 5: 5 x 4 + 3
    assert code_tables.chunk_tokens(bits, logits.device) == 5
    chunked = binary_entropy(logits)
    (chunked_grad,) = torch.autograd.grad(objective(*chunked), logits)
    for a, b in zip(chunked, whole):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(chunked_grad, whole_grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(chunked[1], binary_entropy_oracle(logits)[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("magnitude", [40.0, 200.0, float("inf")])
def test_saturated_logits_give_finite_values_and_gradients(magnitude):
    """At +-40 every code probability is still positive in float64; at +-200 (and inf) most are
    exactly 0 in float32, where a = 0: those codes contribute 0, never NaN."""
    logits = torch.randn(40, 8).sign() * magnitude
    logits[::3, :3] = torch.randn(14, 3)  # some tokens unsaturated in some bits
    logits.requires_grad_()
    per_sample, codebook = binary_entropy(logits)
    objective(per_sample, codebook).backward()
    assert per_sample.isfinite() and codebook.isfinite() and logits.grad.isfinite().all()
    truth = binary_entropy_oracle(logits.detach().clamp(-1e4, 1e4))
    torch.testing.assert_close(per_sample.double(), truth[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(codebook.double(), truth[1], rtol=1e-5, atol=1e-6)


def test_all_tokens_on_one_code_is_zero_entropy_with_zero_gradient():
    logits = torch.full((10, 6), float("inf"), dtype=torch.float64).requires_grad_()
    per_sample, codebook = binary_entropy(logits)
    assert per_sample == 0 and codebook == 0
    objective(per_sample, codebook).backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_uniform_bits_have_maximal_entropy():
    per_sample, codebook = binary_entropy(torch.zeros(3, 12, dtype=torch.float64))
    torch.testing.assert_close(per_sample, torch.tensor(12 * 0.6931471805599453, dtype=torch.float64))
    torch.testing.assert_close(codebook, torch.tensor(12 * 0.6931471805599453, dtype=torch.float64))


def test_nan_logits_give_nan():
    logits = torch.randn(8, 5)
    logits[3, 2] = float("nan")
    assert all(v.isnan() for v in binary_entropy(logits))


@pytest.mark.parametrize(
    "logits,group_size,error,match",
    [
        (torch.ones(4, 3, dtype=torch.int64), None, TypeError, "logits must be a float"),
        (torch.ones(4, 3, dtype=torch.bool), None, TypeError, "logits must be a float"),
        ([[0.0, 1.0]], None, TypeError, "logits must be a float"),
        (torch.ones(0, 3), None, ValueError, "at least one token"),
        (torch.ones(4, 0), None, ValueError, "num_bits >= 1"),
        (torch.tensor(1.0), None, ValueError, "shape"),
        (torch.zeros(2, 25), None, ValueError, "group_size"),
        (torch.zeros(2, 8), 0, ValueError, "group_size"),
        (torch.zeros(2, 8), 25, ValueError, "group_size"),
        (torch.zeros(2, 8), 2.0, ValueError, "group_size"),
        (torch.zeros(2, 8), True, ValueError, "group_size"),
    ],
)
def test_bad_input_is_a_clear_error(logits, group_size, error, match):
    with pytest.raises(error, match=match):
        binary_entropy(logits, group_size)


def test_24_bits_exact_and_more_with_groups():
    logits = torch.randn(3, 24)
    codebook = binary_entropy(logits)[1]
    assert codebook.isfinite() and 0 < codebook <= 24 * 0.6931472
    grouped = binary_entropy(torch.randn(4, 40), group_size=10)[1]
    assert grouped.isfinite()


def test_ops_pass_opcheck():
    logits = torch.randn(13, 7, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.bitcodes_ext.code_usage_sums, (logits, 3))
    torch.library.opcheck(torch.ops.bitcodes_ext.code_usage_sums, (logits.detach().float(), 7))
    grad = torch.rand(torch.ops.bitcodes_ext.code_usage_sums(logits, 7).shape, dtype=torch.float64)
    torch.library.opcheck(torch.ops.bitcodes_ext.code_usage_sums_backward, (grad, logits.detach(), 7))


def test_compiles_with_fullgraph():
    logits = (torch.randn(4, 16, 9) * 2).requires_grad_()
    compiled = torch.compile(lambda l: objective(*binary_entropy(l)), fullgraph=True)
    value = compiled(logits)
    (grad,) = torch.autograd.grad(value, logits)
    reference = logits.detach().clone().requires_grad_()
    expected = objective(*binary_entropy(reference))
    expected.backward()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, reference.grad)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, torch
    from bitcodes_ext import binary_entropy
    torch.manual_seed(0)
    warm = torch.randn(64, 18, requires_grad=True)
    sum(binary_entropy(warm)).backward()  # libraries and thread pools loaded, before the baseline
    logits = torch.randn({tokens}, 18, requires_grad=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_sample, codebook = binary_entropy(logits)
    (per_sample - codebook).backward()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(grown // 1024, float(codebook), bool(logits.grad.isfinite().all()))
    """
)


def test_eighteen_bits_at_32768_tokens_stay_far_below_materialising():
    """N x 2^18 float32 probabilities would be 32 GiB; forward and backward add < 256 MiB."""
    tokens = 32768
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT.format(tokens=tokens)],
                         capture_output=True, text=True, check=True).stdout.split()
    grown_mib, codebook, finite = int(out[0]), float(out[1]), out[2] == "True"
    assert grown_mib < 256, f"{grown_mib} MiB"
    assert finite and 0 < codebook < 18 * 0.6931472

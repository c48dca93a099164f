"""The CPU kernels of every capability this CPU supports agree on the same inputs, each run in its
own process (one capability per process): bits exactly except at certified near-ties, y and the
gradients within their rounding bounds, vq codes exactly except at certified ties."""

import os
import pathlib
import subprocess
import sys

import pytest
import torch

import bitcodes_ext
from bitcodes_ext import functional, vq
from oracle import (
    DTYPES,
    MARGIN_RTOL,
    acc_dtype,
    assert_within,
    certify_bits,
    certify_codes,
    close_tol,
    decode_oracle,
    margins,
    straight_through_bounds,
    sum_bound,
    tie_free_noise,
)

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE_PARENT = pathlib.Path(bitcodes_ext.__file__).resolve().parents[1]
# (tokens, features, bits): token counts that leave partial 48-token tiles and single tokens
# after the register blocks, >= 64 tokens for the look-up tables, feature and bit counts with
# vector tails at every width.
SHAPES = [(7, 5, 3), (130, 33, 13), (301, 70, 37)]
CODES, TEMPERATURE = 150, 0.7
METRICS = ["dot", "euclidean"]
CASES = [(dtype, shape) for dtype in DTYPES for shape in SHAPES]
CASE_IDS = [f"{str(dtype).removeprefix('torch.')}-{'x'.join(map(str, shape))}" for dtype, shape in CASES]


def make_inputs():
    """Fixed inputs per dtype: plain logistic noise for eval-style near-ties, and noise kept away
    from ties for the training step, so that its gradients can be compared elementwise."""
    generator = torch.Generator().manual_seed(2024)
    inputs = {}
    for dtype, shape in CASES:
        tokens, features, num_bits = shape
        x = torch.randn(tokens, features, generator=generator, dtype=torch.float64).to(dtype)
        codebook = torch.randn(2 * num_bits, features, generator=generator, dtype=torch.float64).to(dtype)
        grad_y = torch.randn(tokens, features, generator=generator, dtype=torch.float64).to(dtype)
        u = torch.rand(tokens, num_bits, generator=generator, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        torch.manual_seed(7)  # tie_free_noise draws from the default generator
        tie_free = {metric: tie_free_noise(x, codebook, metric, dtype=dtype) for metric in METRICS}
        observations = torch.randn(tokens, features, generator=generator, dtype=torch.float64).to(dtype)
        codes = torch.randn(CODES, features, generator=generator, dtype=torch.float64).to(dtype)
        bits = torch.randint(0, 2, (tokens, num_bits), generator=generator)
        inputs[dtype, shape] = dict(
            x=x, codebook=codebook, grad_y=grad_y, noise=(u / (1 - u)).log().to(dtype), tie_free=tie_free,
            bits=bits, observations=observations, codes=codes,
        )
    return inputs


def compute(inputs):
    """Every op on the loaded CPU kernels, for every dtype and metric."""
    out = {}
    for key, case in inputs.items():
        for metric in METRICS:
            x, codebook = case["x"], case["codebook"]
            y_eval, bits_eval = functional.bitcodes(x, codebook, training=False, metric=metric, backend="native")
            y_noisy, bits_noisy = functional.bitcodes(x, codebook, training=True, metric=metric, noise=case["noise"], backend="native")
            xg, cg = x.clone().requires_grad_(), codebook.clone().requires_grad_()
            y_train, bits_train = functional.bitcodes(
                xg, cg, training=True, temperature=TEMPERATURE, metric=metric, noise=case["tie_free"][metric], backend="native"
            )
            dx, dc = torch.autograd.grad(y_train, (xg, cg), case["grad_y"])
            out[key, metric] = dict(
                y_eval=y_eval, bits_eval=bits_eval, y_noisy=y_noisy, bits_noisy=bits_noisy,
                y_train=y_train.detach(), bits_train=bits_train, dx=dx, dc=dc,
            )
        cg = case["codebook"].clone().requires_grad_()
        decoded = functional.decode(case["bits"], cg, backend="native")
        (dc_decode,) = torch.autograd.grad(decoded, (cg,), case["grad_y"])
        codes, distances = vq(case["observations"], case["codes"], backend="native")
        out[key] = dict(decoded=decoded.detach(), dc_decode=dc_decode, codes=codes, distances=distances)
    return out


def worker(capability, inputs_path, out_path):
    """Run in a process with BITCODES_CPU_CAPABILITY=capability."""
    loaded = bitcodes_ext.backend_info()["cpu_capability"]
    assert loaded == capability, f"asked for {capability}, loaded {loaded}"
    torch.save(compute(torch.load(inputs_path)), out_path)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{capability: outputs} for each capability this CPU supports, and the inputs."""
    info = bitcodes_ext.backend_info()
    if not info["cpu_kernels"]:
        pytest.skip(f"compiled CPU kernels missing: {info['load_error']}")  # fails in CI via test_build
    supported = info["cpu_capabilities_supported"]
    missing = [c for c in supported if c not in info["cpu_capabilities_built"]]
    assert not missing, f"this CPU supports {missing}, which were not built"
    directory = tmp_path_factory.mktemp("capabilities")
    inputs = make_inputs()
    torch.save(inputs, directory / "inputs.pt")
    outputs = {}
    for capability in supported:
        out = directory / f"{capability}.pt"
        code = f"import test_cpu_capabilities as t; t.worker({capability!r}, {str(directory / 'inputs.pt')!r}, {str(out)!r})"
        env = {**os.environ, "BITCODES_CPU_CAPABILITY": capability, "PYTHONPATH": str(HERE)}
        result = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE_PARENT, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{capability}:\n{result.stderr}"
        outputs[capability] = torch.load(out)
    return inputs, outputs


def pairs(outputs):
    """Each capability against the lowest (DEFAULT)."""
    names = list(outputs)
    return [(names[0], other) for other in names[1:]]


def pairs_to_compare(outputs):
    """pairs(), for a test that checks nothing else: it skips, saying why, where this CPU
    supports only one capability (there is nothing to compare)."""
    if len(outputs) < 2:
        pytest.skip(f"this CPU supports only {list(outputs)}: no two capabilities to compare")
    return pairs(outputs)


def test_every_supported_capability_ran(results):
    _, outputs = results
    supported = bitcodes_ext.backend_info()["cpu_capabilities_supported"]
    assert list(outputs) == supported and supported[0] == "DEFAULT"


def certify_disagreement(bits_a, bits_b, x, codebook, *, metric, noise=None):
    """Bits of two builds may differ only where the float64 margin is within rounding."""
    z, scale = margins(x, codebook, metric, noise)
    differ = bits_a != bits_b
    uncertified = differ & (z.abs() > MARGIN_RTOL[acc_dtype(x.dtype)] * scale)
    assert not uncertified.any(), f"{int(uncertified.sum())} bits differ outside the rounding bound"
    return int(differ.sum())


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype,shape", CASES, ids=CASE_IDS)
def test_forward_agrees(results, dtype, shape, metric):
    inputs, outputs = results
    case = inputs[dtype, shape]
    x, codebook = case["x"], case["codebook"]
    for kind, noise in (("eval", None), ("noisy", case["noise"])):
        for name in outputs:
            got = outputs[name][(dtype, shape), metric]
            bits, y = got[f"bits_{kind}"], got[f"y_{kind}"]
            certify_bits(bits, x, codebook, accumulated_in=acc_dtype(dtype), metric=metric, noise=noise)
            # Each y is within its rounding bound of the exact sum of its own bits.
            assert_within(y, decode_oracle(bits, codebook), sum_bound(bits, codebook, dtype), dtype)
        for a, b in pairs(outputs):
            got_a, got_b = outputs[a][(dtype, shape), metric], outputs[b][(dtype, shape), metric]
            bits_a, bits_b = got_a[f"bits_{kind}"], got_b[f"bits_{kind}"]
            certify_disagreement(bits_a, bits_b, x, codebook, metric=metric, noise=noise)
            same = (bits_a == bits_b).all(-1)
            bound = 2 * sum_bound(bits_a, codebook, dtype)[same]
            assert_within(got_b[f"y_{kind}"][same], got_a[f"y_{kind}"][same].double(), bound, dtype)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype,shape", CASES, ids=CASE_IDS)
def test_training_step_agrees(results, dtype, shape, metric):
    inputs, outputs = results
    case = inputs[dtype, shape]
    x, codebook, noise, grad_y = case["x"], case["codebook"], case["tie_free"][metric], case["grad_y"]
    dx_bound, dc_bound = straight_through_bounds(
        x, codebook, noise, grad_y, temperature=TEMPERATURE, metric=metric, accumulated_in=acc_dtype(dtype)
    )
    tol = close_tol(dtype)
    for a, b in pairs_to_compare(outputs):
        got_a, got_b = outputs[a][(dtype, shape), metric], outputs[b][(dtype, shape), metric]
        assert torch.equal(got_a["bits_train"], got_b["bits_train"])  # the noise keeps every margin off a tie
        bits = got_a["bits_train"]
        assert_within(got_b["y_train"], got_a["y_train"].double(), 2 * sum_bound(bits, codebook, dtype), dtype)
        # Each gradient is within the straight-through bound plus its own rounding of the exact
        # one, so two builds are within twice that of each other.
        for name, bound in (("dx", dx_bound), ("dc", dc_bound)):
            expected = got_a[name].double()
            assert_within(got_b[name], expected, 2 * bound + tol["atol"] * expected.abs().max(), dtype)


@pytest.mark.parametrize("dtype,shape", CASES, ids=CASE_IDS)
def test_decode_and_vq_agree(results, dtype, shape):
    inputs, outputs = results
    case = inputs[dtype, shape]
    tol = close_tol(dtype)
    for a, b in pairs_to_compare(outputs):
        got_a, got_b = outputs[a][dtype, shape], outputs[b][dtype, shape]
        bound = 2 * sum_bound(case["bits"], case["codebook"], dtype)
        assert_within(got_b["decoded"], got_a["decoded"].double(), bound, dtype)
        expected = got_a["dc_decode"].double()  # sums of grad_y over each code's tokens
        assert_within(got_b["dc_decode"], expected, tol["atol"] * expected.abs().max(), dtype)
        for name in (a, b):
            certify_codes(outputs[name][dtype, shape]["codes"], case["observations"], case["codes"], rtol=MARGIN_RTOL[acc_dtype(dtype)])
        same_code = got_a["codes"] == got_b["codes"]
        torch.testing.assert_close(got_b["distances"][same_code], got_a["distances"][same_code], **tol)

import os

import pytest
import torch

import bitcodes_ext

# In CI a missing or broken build must fail the run, never skip it.
IN_CI = bool(os.environ.get("CI"))
CPU_KERNELS = bitcodes_ext.backend_info()["cpu_kernels"]
CUDA_KERNELS = bitcodes_ext.backend_info()["cuda_kernels"]


@pytest.fixture
def native():
    """Tests that exercise the compiled CPU kernels: skipped locally without a build, failed in CI."""
    if not CPU_KERNELS:
        reason = f"compiled CPU kernels missing: {bitcodes_ext.backend_info()['load_error']}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return "native"


@pytest.fixture
def cuda():
    """Tests of the CUDA kernels: skipped without a GPU; with one, a build without them fails."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    if not CUDA_KERNELS:
        pytest.fail(f"a GPU is visible but the CUDA kernels are missing: {bitcodes_ext.backend_info()['load_error']}")
    return torch.device("cuda")


@pytest.fixture(params=["native", "torch"])
def backend(request):
    """Each backend in turn: the compiled kernels (as `native`) and the pure-torch fallback."""
    if request.param == "native":
        return request.getfixturevalue("native")
    return "torch"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)

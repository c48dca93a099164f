import importlib.util
import os
import pathlib

import pytest
import torch

import bitcodes_ext

# In CI a missing or broken build must fail the run, never skip it.
IN_CI = bool(os.environ.get("CI"))
ROOT = pathlib.Path(__file__).resolve().parents[1]
CPU_KERNELS = bitcodes_ext.backend_info()["cpu_kernels"]
CUDA_KERNELS = bitcodes_ext.backend_info()["cuda_kernels"]

# The CUDA kernels built for the CPU emulation of CUDA (tools/cuda_emulator/build.py): when set,
# they replace the CPU kernels and the `cuda` fixture hands out the CPU, so that
# tests/test_cuda_*.py run the CUDA sources without a GPU. Only those files may run then.
CUDA_EMULATOR = os.environ.get("BITCODES_CUDA_EMULATOR")
if CUDA_EMULATOR:
    _spec = importlib.util.spec_from_file_location("emulated", ROOT / "tools" / "cuda_emulator" / "emulated.py")
    emulated = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(emulated)
    _emulated = emulated.install(CUDA_EMULATOR)
    torch.ops.bitcodes_emu.set_order(2)  # threads of a block in random order: races change results


# The CUDA routes (csrc/cuda/route.h) that every test of test_cuda_bitcodes.py and test_cuda_vq.py
# runs on, each forced with BITCODES_CUDA_ROUTE (route mma has its own, tests/test_cuda_mma.py).
# "gemm-chunked" is route gemm with chunks of 100 tokens (and vq tiles of 100 codes), so that small
# inputs cross chunks and end on a partial one.
CUDA_ROUTES = {"cores": {}, "gemm": {}, "gemm-chunked": {"BITCODES_CUDA_CHUNK_TOKENS": "100"}}


@pytest.fixture(params=list(CUDA_ROUTES))
def cuda_route(request, monkeypatch):
    """Forces each CUDA route in turn; returns its name in route.h."""
    route = request.param.split("-")[0]
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", route)
    for name, value in CUDA_ROUTES[request.param].items():
        monkeypatch.setenv(name, value)
    return route


def pytest_addoption(parser):
    parser.addoption(
        "--cuda-emulated-earlier", action="store_true",
        help="tests/test_cuda_*.py already ran on the CUDA emulator (make emulate-cuda, a step of make test): "
        "without a GPU, deselect them here, except those marked real_gpu (they skip: they need a GPU)",
    )


EMULATED_EARLIER = pytest.StashKey[int]()

# The slow tiers, which `make check` leaves out (-m "not slow") and `make test` runs: processes,
# scripts, training runs, 2^31 elements, the GPU checklist's dry run. A file, or file::test.
SLOW = (
    "test_gpu_session.py", "test_distributed.py", "test_distributed_compression.py", "test_fsdp.py",
    "test_bench.py", "test_example.py", "test_compression_example.py", "test_cpu_capabilities.py",
    "test_layouts.py::test_more_than_2_31_elements",
    "test_determinism.py::test_soak_10000_training_steps_without_memory_growth",
    "test_binary_entropy.py::test_eighteen_bits_at_32768_tokens_stay_far_below_materialising",
)


def _deselect(config, items, leave):
    config.hook.pytest_deselected(items=leave)
    items[:] = [item for item in items if item not in leave]


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks added here
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW or f"{item.path.name}::{item.originalname}" in SLOW:
            item.add_marker(pytest.mark.slow)
    # The chunked variant is for small inputs; on a GPU's large ones it would only cost time.
    chunked = [item for item in items if item.get_closest_marker("real_gpu") and "gemm-chunked" in item.name]
    if chunked:
        _deselect(config, items, chunked)
    if config.getoption("cuda_emulated_earlier") and not CUDA_EMULATOR and not torch.cuda.is_available():
        emulated = [i for i in items if i.path.name.startswith("test_cuda_") and not i.get_closest_marker("real_gpu")]
        _deselect(config, items, emulated)
        config.stash[EMULATED_EARLIER] = len(emulated)
    if not CUDA_EMULATOR:
        return
    outside = sorted({item.path.name for item in items if not item.path.name.startswith("test_cuda_")})
    if outside:
        raise pytest.UsageError(f"BITCODES_CUDA_EMULATOR replaces the CPU kernels; run only tests/test_cuda_*.py, not {outside}")


def seed_cuda(seed):
    """Reseeds the generator the CUDA ops draw training noise from: torch.cuda.manual_seed, or the
    emulator's stand-in for it (offset back to 0)."""
    if CUDA_EMULATOR:
        torch.ops.bitcodes_emu.seed_cuda_generator(seed)
    else:
        torch.cuda.manual_seed(seed)


def load_module(path, name):
    """A script (an example, a benchmark) imported as a module, without running its main."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_terminal_summary(terminalreporter, config):
    if config.stash.get(EMULATED_EARLIER, 0):
        terminalreporter.write_line(
            f"{config.stash[EMULATED_EARLIER]} tests of tests/test_cuda_*.py deselected: `make emulate-cuda` ran them "
            "on the CUDA emulator (no GPU here); those marked real_gpu need a GPU and skip"
        )


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
    if CUDA_EMULATOR:
        return torch.device("cpu")
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

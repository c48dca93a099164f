"""Builds bitcodes_ext._C: the CPU kernels always, the CUDA kernels whenever a toolkit is found.

The CUDA kernels need no GPU to build: a CUDA build of torch and a toolkit are enough.

Environment:
  FORCE_CUDA=1                  fail the build, rather than skip the CUDA kernels, when no toolkit
                                or no CUDA build of torch is found
  BITCODES_CUDA=0               skip the CUDA kernels even where they could be built
  TORCH_CUDA_ARCH_LIST="8.0;9.0"  which GPUs to build for (also implies FORCE_CUDA); without it,
                                the visible GPU's, or 8.0 and 9.0 (+PTX) where none is visible
  BITCODES_CPU_CAPABILITY       DEFAULT, AVX2 or AVX512 (default: what this CPU supports)
"""

import glob
import importlib.util
import os
import site
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_cuda_home():
    """tools/cuda_home.py by path (the build runs setup.py outside any package)."""
    spec = importlib.util.spec_from_file_location("cuda_home", os.path.join(ROOT, "tools", "cuda_home.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cuda_home = _load_cuda_home()
CUDA_HOME = _cuda_home.find_cuda_home()
if CUDA_HOME:
    os.environ["CUDA_HOME"] = CUDA_HOME  # before torch.utils.cpp_extension reads it

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"

CPU_FLAGS = {
    "DEFAULT": [],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
}


def _cpu_capability():
    wanted = os.environ.get("BITCODES_CPU_CAPABILITY")
    if wanted is None:
        wanted = torch.backends.cpu.get_cpu_capability()
    wanted = wanted.upper()
    if wanted not in CPU_FLAGS:  # e.g. AVX512_VNNI or a non-x86 CPU
        wanted = "AVX512" if wanted.startswith("AVX512") else "DEFAULT"
    return wanted


def _pip_cuda_include_dirs():
    """Headers that ATen's CUDA headers include (cublas_v2.h, cusparse.h) ship with pip's
    nvidia wheels rather than with every toolkit."""
    roots = site.getsitepackages() + [site.getusersitepackages()]
    found = []
    for root in roots:
        found += glob.glob(os.path.join(root, "nvidia", "cu*", "include"))
        found += glob.glob(os.path.join(root, "nvidia", "*", "include"))
    return sorted(set(found))


def _want_cuda():
    """Build CUDA kernels where a toolkit and a CUDA build of torch are present; no GPU is needed."""
    if os.environ.get("BITCODES_CUDA") == "0":
        return False
    forced = os.environ.get("FORCE_CUDA") == "1" or bool(os.environ.get("TORCH_CUDA_ARCH_LIST"))
    possible = bool(CUDA_HOME) and torch.version.cuda is not None
    if forced and not possible:
        sys.exit(
            "FORCE_CUDA/TORCH_CUDA_ARCH_LIST is set, but "
            + ("no CUDA toolkit was found (set CUDA_HOME)" if not CUDA_HOME else "torch is a CPU-only build")
        )
    return possible


def _visible_cuda_archs():
    """The visible GPUs' architectures ("9.0"), as torch would build for them; "" without one.
    No GPU to build for: DEFAULT_CUDA_ARCHS, Ampere and Hopper plus PTX that newer GPUs can JIT."""
    if not torch.cuda.is_available():
        return ""
    found = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(found))


def extensions():
    capability = _cpu_capability()
    cxx = ["-O3", "-fopenmp", f'-DBITCODES_CPU_CAPABILITY="{capability}"'] + CPU_FLAGS[capability]
    if capability != "DEFAULT":
        cxx += [f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}"]
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    kwargs = dict(extra_link_args=["-fopenmp"])
    if _want_cuda():
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            os.environ["TORCH_CUDA_ARCH_LIST"] = _visible_cuda_archs() or DEFAULT_CUDA_ARCHS
        # Recorded in the module (backend_info()["cuda_archs"]), so tests/test_build.py can check
        # the fatbinary against it; commas, since a ';' would end the compiler's shell command.
        cxx = cxx + [f'-DBITCODES_CUDA_ARCHS="{os.environ["TORCH_CUDA_ARCH_LIST"].replace(";", ",")}"']
        return [
            CUDAExtension(
                "bitcodes_ext._C",
                sources + cuda_sources,
                include_dirs=_pip_cuda_include_dirs(),
                extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
                **kwargs,
            )
        ]
    return [CppExtension("bitcodes_ext._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)]


setup(
    name="bitcodes_ext",
    version="0.1.0",
    description="Fused C++/CUDA kernels for binary-code vector quantization (Bitcodes) in PyTorch",
    packages=find_packages(include=["bitcodes_ext", "bitcodes_ext.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.9",
    install_requires=["torch"],
)

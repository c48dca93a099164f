"""Builds the compiled parts of bitcodes_ext (metadata: pyproject.toml):

  bitcodes_ext._C             the op schemas, the CUDA kernels whenever a toolkit is found, and
                              a probe of the instruction sets this CPU supports
  bitcodes_ext._cpu_default   the CPU kernels (csrc/cpu/), compiled once per capability with
  bitcodes_ext._cpu_avx2      that capability's flags (CPU_FLAGS); at import, bitcodes_ext
  bitcodes_ext._cpu_avx512    loads exactly one: the best this CPU supports (_extension.py)

Only DEFAULT is built on a CPU other than x86-64. torch must be installed first, and the build
must see it: `pip install --no-build-isolation .` (torch is deliberately not a build
requirement, since an isolated build would compile against a different torch than the one
that runs). The CUDA kernels need no GPU to build: a CUDA build of torch and a toolkit are enough.

The build-time environment (BITCODES_BUILD_CPU_CAPABILITIES, FORCE_CUDA, BITCODES_CUDA,
TORCH_CUDA_ARCH_LIST, BITCODES_SANITIZE) is described in docs/install.md. Each module's objects
are kept in build/<module>/, so that a rebuild (an editable install, `make wheel-test`'s wheel)
compiles only what changed: ninja compares each object's command line and inputs.
"""

import glob
import logging
import os
import platform
import shutil
import site
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _has_nvcc(home):
    return bool(home) and os.path.isfile(os.path.join(home, "bin", "nvcc"))


def _find_cuda_home():
    """The toolkit root; torch's own guess takes dirname(dirname(which nvcc)), which is wrong
    where nvcc on PATH is a wrapper script (e.g. /usr/local/bin/nvcc -> /usr/local)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for home in candidates:
        if _has_nvcc(home) and os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")):
            return os.path.realpath(home)
    return None


CUDA_HOME = _find_cuda_home()
if CUDA_HOME:
    os.environ["CUDA_HOME"] = CUDA_HOME  # before torch.utils.cpp_extension reads it

try:
    import torch
except ImportError:
    sys.exit(
        "bitcodes_ext compiles its kernels against the installed torch, but this build cannot import torch.\n"
        "Install torch first, then build in that same environment, without build isolation:\n"
        "    pip install torch\n"
        "    pip install --no-build-isolation .   (or the sdist or git+ URL you are installing)\n"
        "pip's isolated build environment has no torch, on purpose: kernels compiled against "
        "another torch than the one that runs them would not load."
    )

# Importing cpp_extension logs "No CUDA runtime is found, using CUDA_HOME=..." wherever no GPU
# is visible: true, and nothing to act on (the CUDA kernels build without a GPU). Other
# messages of that logger still show.
logging.getLogger("torch.utils.cpp_extension").addFilter(lambda record: not record.getMessage().startswith("No CUDA runtime is found"))
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"

# The flags of each CPU capability; bitcodes_ext._C's probe (csrc/python_module.cpp) checks
# exactly the features these enable before that build may load.
CPU_FLAGS = {
    "DEFAULT": [],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
}
X86 = platform.machine().lower() in ("x86_64", "amd64")


def _cpu_capabilities():
    """The CPU capabilities to build: BITCODES_BUILD_CPU_CAPABILITIES's, or all that this architecture has."""
    available = list(CPU_FLAGS) if X86 else ["DEFAULT"]
    wanted = os.environ.get("BITCODES_BUILD_CPU_CAPABILITIES")
    if not wanted:
        return available
    chosen = [name.strip().upper() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in available]
    if unknown or not chosen:
        sys.exit(
            f"BITCODES_BUILD_CPU_CAPABILITIES={wanted!r}: expected a comma-separated list of "
            f"{', '.join(name.lower() for name in available)} (this is {platform.machine()})"
        )
    return [name for name in available if name in chosen]


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


def _sanitizer_flags():
    if os.environ.get("BITCODES_SANITIZE") != "1":
        return []
    # No recovery: the first report aborts, so a finding fails the test run. -fno-wrapv undoes
    # Python's -fwrapv, under which signed overflow is defined and UBSan would not check it.
    return ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-wrapv", "-fno-omit-frame-pointer", "-g"]


def cpu_extension(capability):
    """csrc/cpu/ compiled for one capability, as bitcodes_ext._cpu_<capability>."""
    sanitize = _sanitizer_flags()
    cxx = ["-O3", "-fopenmp", f'-DBITCODES_MODULE_CPU_CAPABILITY="{capability}"'] + CPU_FLAGS[capability] + sanitize
    if capability != "DEFAULT":  # ATen's vectorized types for this capability, in their own namespace
        cxx += [f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}"]
    return CppExtension(
        f"bitcodes_ext._cpu_{capability.lower()}",
        sorted(glob.glob("csrc/cpu/*.cpp")),
        extra_compile_args={"cxx": cxx},
        extra_link_args=["-fopenmp"] + sanitize,
    )


def _visible_cuda_archs():
    """The visible GPUs' architectures ("8.0;9.0"), which torch builds for when
    TORCH_CUDA_ARCH_LIST is unset."""
    found = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(found))


def schema_extension():
    """bitcodes_ext._C: the schemas, the CPU probe and, where they can be built, the CUDA kernels."""
    sources = ["csrc/bitcodes.cpp", "csrc/python_module.cpp"]
    sanitize = _sanitizer_flags()
    # Recorded in the module (backend_info()["built_with_torch"]): a build carried to another
    # machine (the GPU checklist) is used only where that machine's torch is this one.
    cxx = ["-O3", f'-DBITCODES_TORCH_VERSION="{torch.__version__}"'] + sanitize
    if not _want_cuda():
        return CppExtension("bitcodes_ext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=sanitize)
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # No GPU to build for: Ampere and Hopper, plus PTX that newer GPUs can JIT.
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST") or _visible_cuda_archs()
    # Recorded in the module (backend_info()["cuda_archs"]), so tests/test_build.py can check the
    # fatbinary against it; commas, since a ';' would end the compiler's shell command.
    cxx = cxx + [f'-DBITCODES_CUDA_ARCHS="{archs.replace(";", ",")}"']
    return CUDAExtension(
        "bitcodes_ext._C",
        sources + sorted(glob.glob("csrc/cuda/*.cu")),
        include_dirs=_pip_cuda_include_dirs(),
        extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
        extra_link_args=sanitize,
    )


class BuildPerExtension(BuildExtension):
    """Each extension in its own build directory, build/<module>/ of this tree: the CPU modules
    compile the same sources, which would otherwise land on the same object paths, and a
    directory that outlives the build (pip's editable install would use a temporary one) lets
    the next build reuse every object that is still current. One extension at a time (ninja
    still compiles each extension's sources in parallel)."""

    def finalize_options(self):
        super().finalize_options()
        self.parallel = None

    def build_extension(self, ext):
        shared_temp = self.build_temp
        self.build_temp = os.path.join(ROOT, "build", ext.name)
        try:
            super().build_extension(ext)
        finally:
            self.build_temp = shared_temp


setup(
    ext_modules=[schema_extension()] + [cpu_extension(capability) for capability in _cpu_capabilities()],
    cmdclass={"build_ext": BuildPerExtension},
    # A compiled extension runs only with the torch it was built against.
    install_requires=[f"torch=={torch.__version__.split('+')[0]}"],
)

"""The build itself: in CI the compiled kernels must be there."""

import os

import torch

import bitcodes_ext
from conftest import IN_CI


def test_backend_info_reports_the_build():
    info = bitcodes_ext.backend_info()
    assert {"cpu_kernels", "cuda_kernels", "torch"} <= info.keys()
    assert info["torch"] == torch.__version__
    assert isinstance(info["cpu_kernels"], bool) and isinstance(info["cuda_kernels"], bool)
    if IN_CI:
        assert info["cpu_kernels"], f"CI built no CPU kernels: {info['load_error']}"
    if IN_CI and torch.version.cuda and os.environ.get("BITCODES_CUDA") != "0":
        # CI has the CUDA toolkit and a CUDA build of torch: the .cu sources must have compiled
        # (unless the build was told to skip them, as tools/mutants.py's CPU-only builds are).
        assert info["cuda_kernels"], f"CI built no CUDA kernels: {info['load_error']}"
    if info["cpu_kernels"]:
        assert info["load_error"] is None and info["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512")

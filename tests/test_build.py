"""The build itself: in CI the compiled kernels must be there, and the CUDA ones for sm_80 and sm_90."""

import importlib.util
import pathlib
import re
import subprocess

import pytest
import torch

import bitcodes_ext
from bitcodes_ext import _extension
from conftest import IN_CI


def test_backend_info_reports_the_build():
    info = bitcodes_ext.backend_info()
    assert {"cpu_kernels", "cuda_kernels", "torch"} <= info.keys()
    assert info["torch"] == torch.__version__
    assert isinstance(info["cpu_kernels"], bool) and isinstance(info["cuda_kernels"], bool)
    if IN_CI:
        assert info["cpu_kernels"], f"CI built no CPU kernels: {info['load_error']}"
    if IN_CI and torch.version.cuda:
        # CI has the CUDA toolkit and a CUDA build of torch: the .cu sources must have compiled.
        assert info["cuda_kernels"], f"CI built no CUDA kernels: {info['load_error']}"
    if info["cpu_kernels"]:
        assert info["load_error"] is None and info["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512")


def _load_tool(name):
    path = pathlib.Path(__file__).resolve().parent.parent / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arch_numbers(archs):
    """"8.0,9.0+PTX" -> ({"80", "90"}, {"90"}): the ELF and the PTX architectures."""
    elf, ptx = set(), set()
    for arch in archs.split(","):
        number = arch.split("+")[0].replace(".", "")
        elf.add(number)
        if arch.endswith("+PTX"):
            ptx.add(number)
    return elf, ptx


def test_fatbinary_holds_the_archs_of_the_build():
    # Where the CUDA kernels were built, the extension holds machine code (ELF) for every
    # architecture the build targeted; CI's build (no GPU visible) targets sm_80 and sm_90.
    info = bitcodes_ext.backend_info()
    if not info["cuda_kernels"]:
        pytest.skip("the CUDA kernels were not built (test_backend_info_reports_the_build fails CI for that)")
    assert info["cuda_archs"], "the CUDA build did not record its TORCH_CUDA_ARCH_LIST"
    elf, ptx = _arch_numbers(info["cuda_archs"])
    if IN_CI:
        assert {"80", "90"} <= elf, f"CI must build sm_80 and sm_90, built {info['cuda_archs']}"
    home = _load_tool("cuda_home").find_cuda_home()
    cuobjdump = pathlib.Path(home or "/nonexistent") / "bin" / "cuobjdump"
    if not cuobjdump.is_file():
        reason = f"cuobjdump not found in the CUDA toolkit ({home})"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    library = _extension._C.__file__
    listed = {}
    for kind in ("elf", "ptx"):
        result = subprocess.run([str(cuobjdump), f"--list-{kind}", library], capture_output=True, text=True, check=True)
        listed[kind] = set(re.findall(r"(?:sm|compute)_(\d+)", result.stdout))
    assert elf <= listed["elf"], f"{library} holds ELF for {sorted(listed['elf'])}, the build targeted {sorted(elf)}"
    assert ptx <= listed["ptx"], f"{library} holds PTX for {sorted(listed['ptx'])}, the build targeted {sorted(ptx)}"

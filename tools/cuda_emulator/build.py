"""Builds the CUDA kernels of csrc/cuda/ for a CPU emulation of CUDA (emu_cuda.h), so their
logic is tested on machines without a GPU (CI runs them through tests/test_cuda_*.py).

The sources are rewritten mechanically, and only where CUDA syntax has no C++ spelling:
CUDA-only includes -> emu_cuda.h, `__shared__` -> `static` (a block's fibers share it; blocks
run one at a time), the `extern __shared__` mask -> the launch's dynamic buffer, `<<<...>>>`
launches -> emu::Launcher, and the CUDA registrations -> ops under `bitcodes_emu`. Kernel
bodies are otherwise byte-identical to what nvcc compiles. Instructions with no C++ spelling
(mma.sync, ldmatrix, cp.async) are called through the wrappers of csrc/cuda/mma.cuh, which
take the emulator's implementations where emu_cuda.h (force-included) defines
BITCODES_CUDA_EMULATOR, and inline PTX under nvcc. A misaligned access (a 16-byte vector load
from an address that is not a multiple of 16, which faults on a GPU) aborts, by the compiler's
alignment sanitizer.

The library also carries the test-only ops of emu_*.cpp (bitcodes_emu::set_order, set_sm_count, route_for,
and the instruction tests of emu_instructions.cpp used by tests/test_cuda_emulator.py).

    python tools/cuda_emulator/build.py   # prints the path of the library to load
"""

import logging
import os
import pathlib
import re

# Importing cpp_extension logs "No CUDA runtime is found, using CUDA_HOME=..." without a GPU (a
# wrong guess here); the emulator compiles plain C++. Only that message is dropped.
logging.getLogger("torch.utils.cpp_extension").addFilter(lambda record: not record.getMessage().startswith("No CUDA runtime is found"))
from torch.utils.cpp_extension import load  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "build" / "cuda_emulator"
CUDA_INCLUDES = ["ATen/cuda/CUDAContext.h", "c10/cuda/CUDAException.h", "c10/cuda/CUDAGuard.h", "ATen/cuda/CUDAGeneratorImpl.h"]
ALIGNMENT_CHECK = ["-fsanitize=alignment", "-fno-sanitize-recover=alignment"]
LAUNCH = re.compile(r"(\w+<[^;<>]*(?:<[^;<>]*>[^;<>]*)*>)<<<(.*?)>>>\(", re.S)


def rewrite(text):
    for header in CUDA_INCLUDES:
        text = text.replace(f"#include <{header}>", f'#include "emu_cuda.h"  // was <{header}>')
    text = text.replace("extern __shared__ uint32_t mask[];", "uint32_t* mask = ::emu::dyn_smem<uint32_t>();")
    text = text.replace("__shared__", "static")
    text = LAUNCH.sub(lambda m: f"::emu::Launcher({m.group(2)}).run([](auto... p_) {{ {m.group(1)}(p_...); }}, ", text)
    text = text.replace("TORCH_LIBRARY_IMPL(bitcodes_ext, CUDA, m)", "TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m)")
    return text.replace("m.impl(", "m.def(")


def write_if_changed(path, text):
    """Leaves an unchanged file (and its time stamp) alone, so that ninja rebuilds only what changed."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def main():
    source = OUT / "src" / "csrc"
    (source / "cuda").mkdir(parents=True, exist_ok=True)
    for header in sorted((ROOT / "csrc").glob("*.h")):  # the headers every backend shares
        write_if_changed(source / header.name, header.read_text())
    for path in sorted((ROOT / "csrc" / "cuda").iterdir()):
        name = path.name.replace(".cu", ".cpp") if path.suffix == ".cu" else path.name
        write_if_changed(source / "cuda" / name, rewrite(path.read_text()))
    # The kernels, then the test-only ops (emu_*.cpp: scheduling control, the instructions driven
    # directly), which include the rewritten headers as "cuda/...".
    sources = sorted(str(p) for p in (source / "cuda").glob("*.cpp")) + sorted(str(p) for p in HERE.glob("emu_*.cpp"))
    load(
        name="bitcodes_cuda_emulated",
        sources=sources,
        build_directory=str(OUT),
        is_python_module=False,
        # -fno-strict-aliasing: kernels store pairs of 16-bit values as one 32-bit word, as CUDA code does.
        extra_cflags=["-O2", "-std=c++20", "-fno-strict-aliasing", f"-I{HERE}", f"-I{source}", "-include",
                      str(HERE / "emu_cuda.h"), "-Wno-unknown-pragmas"] + ALIGNMENT_CHECK,
        extra_ldflags=ALIGNMENT_CHECK,
        verbose=bool(os.environ.get("VERBOSE")),
    )
    print(OUT / "bitcodes_cuda_emulated.so")


if __name__ == "__main__":
    main()

"""Builds the CUDA kernels of csrc/cuda/ for a CPU emulation of CUDA (emu_cuda.h), so their
logic is tested on machines without a GPU (CI runs them through tests/test_cuda_*.py).

The sources are rewritten mechanically, and only where CUDA syntax has no C++ spelling:
CUDA-only includes -> emu_cuda.h, `__shared__` -> `static` (a block's fibers share it; blocks
run one at a time), the `extern __shared__` mask -> the launch's dynamic buffer, `<<<...>>>`
launches -> emu::Launcher, and the CUDA registrations -> ops under `bitcodes_emu`. Kernel
bodies are otherwise byte-identical to what nvcc compiles.

    python tools/cuda_emulator/build.py   # prints the path of the library to load
"""

import os
import pathlib
import re

from torch.utils.cpp_extension import load

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "build" / "cuda_emulator"
CUDA_INCLUDES = ["ATen/cuda/CUDAContext.h", "c10/cuda/CUDAException.h", "c10/cuda/CUDAGuard.h", "ATen/cuda/CUDAGeneratorImpl.h"]
LAUNCH = re.compile(r"(\w+<[^;<>]*(?:<[^;<>]*>[^;<>]*)*>)<<<(.*?)>>>\(", re.S)


def rewrite(text):
    for header in CUDA_INCLUDES:
        text = text.replace(f"#include <{header}>", f'#include "emu_cuda.h"  // was <{header}>')
    text = text.replace("extern __shared__ uint32_t mask[];", "uint32_t* mask = ::emu::dyn_smem<uint32_t>();")
    text = text.replace("__shared__", "static")
    text = LAUNCH.sub(lambda m: f"::emu::Launcher({m.group(2)}).run([](auto... p_) {{ {m.group(1)}(p_...); }}, ", text)
    text = text.replace("TORCH_LIBRARY_IMPL(bitcodes_ext, CUDA, m)", "TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m)")
    return text.replace("m.impl(", "m.def(")


def main():
    source = OUT / "src" / "csrc"
    (source / "cuda").mkdir(parents=True, exist_ok=True)
    for header in ("bits_dtype.h", "checks.h", "codebook_terms.h"):
        (source / header).write_text((ROOT / "csrc" / header).read_text())
    for path in sorted((ROOT / "csrc" / "cuda").iterdir()):
        name = path.name.replace(".cu", ".cpp") if path.suffix == ".cu" else path.name
        (source / "cuda" / name).write_text(rewrite(path.read_text()))
    sources = sorted(str(p) for p in (source / "cuda").glob("*.cpp")) + [str(HERE / "emu_control.cpp")]
    load(
        name="bitcodes_cuda_emulated",
        sources=sources,
        build_directory=str(OUT),
        is_python_module=False,
        extra_cflags=["-O2", "-std=c++20", f"-I{HERE}", "-include", str(HERE / "emu_cuda.h"), "-Wno-unknown-pragmas"],
        verbose=bool(os.environ.get("VERBOSE")),
    )
    print(OUT / "bitcodes_cuda_emulated.so")


if __name__ == "__main__":
    main()

"""Prints the cmake arguments that find this environment's LibTorch.

A CUDA build of torch makes find_package(Torch) look for the CUDA toolkit and nvrtc; pip's
wheel ships nvrtc under site-packages/nvidia, and CMake cannot guess the toolkit where nvcc
on PATH is a wrapper script. A CPU build needs only the prefix. The CPU kernels are built for
the best instruction set this CPU supports, as the package's probe says (tools/cpu_capabilities.py).
"""

import glob
import os

import torch
import torch.utils

import cpu_capabilities

args = [f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DBITCODES_BUILD_CPU_CAPABILITY={cpu_capabilities.best()}"]
if torch.version.cuda:
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    args.append(f"-DCUDA_TOOLKIT_ROOT_DIR={home}")
    site = os.path.dirname(os.path.dirname(torch.__file__))
    nvrtc = sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "libnvrtc.so*")))
    if nvrtc:
        args.append(f"-DCUDA_nvrtc_LIBRARY={nvrtc[0]}")
print(" ".join(args))

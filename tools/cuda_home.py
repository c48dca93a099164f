"""Where the CUDA toolkit is: the one search that setup.py and tests/test_build.py share.

torch's own guess takes dirname(dirname(which nvcc)), which is wrong where nvcc on PATH is a
wrapper script (e.g. /usr/local/bin/nvcc -> /usr/local).
"""

import os
import shutil


def has_nvcc(home):
    return bool(home) and os.path.isfile(os.path.join(home, "bin", "nvcc"))


def find_cuda_home():
    """The toolkit root (CUDA_HOME, CUDA_PATH, /usr/local/cuda, or the real location of nvcc on
    the PATH): the first that has bin/nvcc and include/cuda_runtime.h; None if none has."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for home in candidates:
        if has_nvcc(home) and os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")):
            return os.path.realpath(home)
    return None

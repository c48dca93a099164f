"""What this installation can run."""

import torch

from . import _extension


def backend_info() -> dict:
    """Which compiled kernels are loaded, for which CPU, against which torch."""
    return {
        "cpu_kernels": _extension.has_kernels("cpu"),
        "cuda_kernels": _extension.has_kernels("cuda"),
        "cpu_capability": _extension.COMPILED_CPU_CAPABILITY,
        "torch": torch.__version__,
        "load_error": _extension.LOAD_ERROR,
    }

"""What this installation can run."""

import torch

from . import _extension


def backend_info() -> dict:
    """Which compiled kernels are loaded, for which CPU, against which torch.

    cpu_capability: the instruction set of the CPU kernels loaded (DEFAULT, AVX2, AVX512; None
    without CPU kernels); cpu_capabilities_built: those this installation compiled;
    cpu_capabilities_supported: those this CPU can run (None where the probe could not load).
    """
    supported = _extension.SUPPORTED_CPU_CAPABILITIES
    return {
        "cpu_kernels": _extension.has_kernels("cpu"),
        "cuda_kernels": _extension.has_kernels("cuda"),
        "cpu_capability": _extension.CPU_CAPABILITY,
        "cpu_capabilities_built": list(_extension.BUILT_CPU_CAPABILITIES),
        "cpu_capabilities_supported": None if supported is None else list(supported),
        "torch": torch.__version__,
        "load_error": _extension.LOAD_ERROR or _extension.CPU_LOAD_ERROR,
    }

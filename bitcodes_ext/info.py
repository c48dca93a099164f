"""What this installation can run."""

import torch

from . import _extension, _validate


def backend_info() -> dict:
    """Which compiled kernels are loaded, for which CPU, against which torch.

    cpu_capability: the instruction set of the CPU kernels loaded (DEFAULT, AVX2, AVX512; None
    without CPU kernels); cpu_capabilities_built: those this installation compiled;
    cpu_capabilities_supported: those this CPU can run (None where the probe could not load);
    cuda_archs: the GPU architectures the CUDA kernels were built for ("8.0,9.0+PTX"), or None;
    built_with_torch: the torch version the extension was compiled against (None without it).
    """
    supported = _extension.SUPPORTED_CPU_CAPABILITIES
    return {
        "cpu_kernels": _extension.has_kernels("cpu"),
        "cuda_kernels": _extension.has_kernels("cuda"),
        "cpu_capability": _extension.CPU_CAPABILITY,
        "cpu_capabilities_built": list(_extension.BUILT_CPU_CAPABILITIES),
        "cpu_capabilities_supported": None if supported is None else list(supported),
        "cuda_archs": _extension.COMPILED_CUDA_ARCHS,
        "torch": torch.__version__,
        "built_with_torch": _extension.BUILT_WITH_TORCH,
        "load_error": _extension.LOAD_ERROR or _extension.CPU_LOAD_ERROR,
    }


# The bitcodes_ext::* ops (csrc/bitcodes.cpp declares their schemas; tests/test_ops.py checks
# this list against them): the one list of their names.
OPS = ("forward", "backward", "decode", "decode_backward", "vq")
# The bitcodes_ext::* ops defined in Python on ATen (entropy.py: binary_entropy's usage sums).
ATEN_OPS = ("code_usage_sums", "code_usage_sums_backward")
_DTYPE_NAMES = {dtype: str(dtype).removeprefix("torch.") for dtype in _validate.FLOAT_DTYPES}


def _problem(op, dtype, tokens, width, features, training, bits_dtype):
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if dtype not in _DTYPE_NAMES:
        raise TypeError(f"dtype must be one of {tuple(_DTYPE_NAMES)}, got {dtype!r}")
    bits_bytes = torch.empty((), dtype=bits_dtype).element_size()
    return op, _DTYPE_NAMES[dtype], int(tokens), int(width), int(features), bool(training), bits_bytes


def cuda_routes() -> tuple:
    """The names of the CUDA routes (BITCODES_CUDA_ROUTE takes one of them, or `auto`)."""
    return tuple(_extension.cuda_model().cuda_routes())


def cuda_route(op, dtype, tokens, width, features, *, training=False, bits_dtype=torch.int64) -> str:
    """The route a CUDA op takes for this problem: route.h's rule (the lowest predicted time),
    or BITCODES_CUDA_ROUTE. `width` is num_bits, or num_codes for vq."""
    return _extension.cuda_model().cuda_route(*_problem(op, dtype, tokens, width, features, training, bits_dtype))


def predicted_cuda_ms(route, op, dtype, tokens, width, features, *, training=False, bits_dtype=torch.int64) -> float:
    """The cost model's time for `route` on an H100 (csrc/cuda/cost_model.h), in ms."""
    return _extension.cuda_model().cuda_predicted_ms(route, *_problem(op, dtype, tokens, width, features, training, bits_dtype))

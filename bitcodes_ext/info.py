"""What this installation can run, and which CUDA route (csrc/cuda/route.h) an op would take."""

import torch

from . import _extension


def backend_info() -> dict:
    """Which compiled kernels are loaded, for which CPU and GPUs, against which torch."""
    return {
        "cpu_kernels": _extension.has_kernels("cpu"),
        "cuda_kernels": _extension.has_kernels("cuda"),
        "cpu_capability": _extension.COMPILED_CPU_CAPABILITY,
        "cuda_archs": _extension.COMPILED_CUDA_ARCHS,
        "torch": torch.__version__,
        "load_error": _extension.LOAD_ERROR,
    }


_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}
CUDA_OPS = ("forward", "backward", "decode", "decode_backward", "vq")


def _problem(op, dtype, tokens, width, features, training, bits_dtype):
    if op not in CUDA_OPS:
        raise ValueError(f"op must be one of {CUDA_OPS}, got {op!r}")
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

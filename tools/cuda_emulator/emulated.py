"""Puts the CUDA kernels built for the CPU emulation (build.py) in place of the CPU kernels of
the bitcodes_ext ops, so that anything calling the ops on CPU tensors runs the CUDA sources:
the tests (tests/conftest.py) and the GPU checklist's dry run of the benchmark."""

import torch

from bitcodes_ext.info import OPS


def install(library_path):
    """Loads the emulated kernels and registers them for the CPU. Keep the returned Library:
    the registrations last as long as it does."""
    torch.ops.load_library(library_path)
    library = torch.library.Library("bitcodes_ext", "IMPL")
    for op in OPS:
        library.impl(op, _with_defaults(op), "CPU", allow_override=True)
    return library


def _with_defaults(name):
    # The dispatcher drops trailing arguments equal to their defaults (bits_dtype=int64); the
    # emulated op, a schema inferred from the C++ signature, has no defaults, so put them back.
    schema, target = getattr(torch.ops.bitcodes_ext, name).default._schema, getattr(torch.ops.bitcodes_emu, name)
    defaults = [arg.default_value for arg in schema.arguments]
    return lambda *args: target(*args, *defaults[len(args) :])

"""Loads the compiled kernels. The only module that touches bitcodes_ext._C."""

import warnings

import torch

try:
    from . import _C  # noqa: F401  (registers the bitcodes_ext::* ops)

    LOAD_ERROR = None
except ImportError as error:  # not built, or built against another torch
    _C = None
    LOAD_ERROR = f"{type(error).__name__}: {error}"

COMPILED_CPU_CAPABILITY = getattr(_C, "cpu_capability", None)
# The GPU architectures the CUDA kernels were built for ("8.0,9.0+PTX"), None without them.
COMPILED_CUDA_ARCHS = getattr(_C, "cuda_archs", None)

# A build for AVX2/AVX512 would die on an older CPU with an illegal instruction; use the
# pure-torch path there instead.
_ORDER = ["DEFAULT", "AVX2", "AVX512"]


def _cpu_supports(capability):
    have = torch.backends.cpu.get_cpu_capability().upper()
    have = "AVX512" if have.startswith("AVX512") else have
    return have in _ORDER and _ORDER.index(have) >= _ORDER.index(capability)


if _C is not None and COMPILED_CPU_CAPABILITY in _ORDER and not _cpu_supports(COMPILED_CPU_CAPABILITY):
    LOAD_ERROR = (
        f"the kernels were built for {COMPILED_CPU_CAPABILITY} but this CPU reports "
        f"{torch.backends.cpu.get_cpu_capability()}; rebuild with BITCODES_CPU_CAPABILITY=DEFAULT"
    )


def _registered(dispatch_key: str) -> bool:
    if LOAD_ERROR is not None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("bitcodes_ext::forward", dispatch_key)


# Read once at import: a plain dict keeps has_kernels traceable by torch.compile.
_KERNELS = {"cpu": _registered("CPU"), "cuda": _registered("CUDA")}


def has_kernels(device_type: str) -> bool:
    """Whether a compiled kernel is registered for this device type ('cpu', 'cuda')."""
    return _KERNELS.get(device_type, False)


def cuda_model():
    """The module's CUDA route rule and cost model (csrc/cuda/route.h); for bitcodes_ext.info."""
    if LOAD_ERROR is not None:
        raise RuntimeError(f"bitcodes_ext: the compiled extension is not loaded ({LOAD_ERROR})")
    return _C


_warned = False


def warn_fallback(device_type: str) -> None:
    """One clear warning per process when the pure-torch fallback stands in for the kernels."""
    global _warned
    if _warned:
        return
    _warned = True
    reason = LOAD_ERROR or f"the extension was built without {device_type} kernels"
    warnings.warn(
        f"bitcodes_ext: compiled kernels unavailable for {device_type} ({reason}); "
        "using the slower pure-torch implementation. Reinstall with `pip install .` to build them.",
        RuntimeWarning,
        stacklevel=3,
    )

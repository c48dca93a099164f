"""Loads the compiled kernels. The only module that touches bitcodes_ext's compiled modules:

- _C: the op schemas, the CUDA kernels (where built) and a probe of what this CPU supports;
- _cpu_default, _cpu_avx2, _cpu_avx512: the CPU kernels, one build per instruction set.

Exactly one CPU module is imported per process (importing registers its kernels; a second
would register the same ops again): the fastest that is built and that this CPU supports (the
highest, except on the CPU families of PREFERRED_CAPABILITY), or the one
BITCODES_CPU_CAPABILITY=default|avx2|avx512 asks for. No instructions of a capability the
CPU lacks are ever loaded, so an older CPU gets a slower path, never an illegal instruction.
"""

import importlib
import importlib.util
import os
import warnings

import torch

CAPABILITIES = ("DEFAULT", "AVX2", "AVX512")  # lowest first
CAPABILITY_VARIABLE = "BITCODES_CPU_CAPABILITY"

try:
    from . import _C  # registers the bitcodes_ext::* schemas (and the CUDA kernels)

    LOAD_ERROR = None
except ImportError as error:  # not built, or built against another torch
    _C = None
    LOAD_ERROR = f"{type(error).__name__}: {error}"


def _cpu_module(capability: str) -> str:
    return f"{__package__}._cpu_{capability.lower()}"


# Without _C nothing compiled can load, and the probe is unknown (None).
BUILT_CPU_CAPABILITIES = tuple(c for c in CAPABILITIES if importlib.util.find_spec(_cpu_module(c)) is not None)
SUPPORTED_CPU_CAPABILITIES = tuple(_C.supported_cpu_capabilities()) if _C is not None else None
# The GPU architectures the CUDA kernels were built for ("8.0,9.0+PTX"), None without them.
COMPILED_CUDA_ARCHS = getattr(_C, "cuda_archs", None)
# torch.__version__ of the build: a build only loads reliably under that torch.
BUILT_WITH_TORCH = getattr(_C, "torch_version", None)


# CPU families where a lower capability measured faster than the highest one the CPU supports:
# (vendor, family) -> the capability to load. AMD family 25 with AVX-512 is Zen 4, which runs
# 512-bit vectors as two 256-bit halves: there our AVX2 build ran 3-5% faster at the large points
# of the benchmark grid and 27% faster at (8192, 64, 8), where AVX-512 pads 8 bits to 16 lanes
# (benchmarks/NOTES.md, "CPU roofline on AMD Zen 4").
PREFERRED_CAPABILITY = {("AuthenticAMD", 25): "AVX2"}


def cpu_family():
    """(vendor, family) of this CPU from /proc/cpuinfo, or None where it cannot be read."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:  # the first processor's block is enough: read no further
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        return fields["vendor_id"], int(fields["cpu family"])
    except (OSError, KeyError, ValueError):
        return None


def _requested_capability():
    wanted = os.environ.get(CAPABILITY_VARIABLE, "").strip()
    if not wanted:
        return None
    if wanted.upper() not in CAPABILITIES:
        raise ValueError(f"{CAPABILITY_VARIABLE}={wanted!r}: expected one of {', '.join(c.lower() for c in CAPABILITIES)}")
    return wanted.upper()


def _names(capabilities):
    return ", ".join(c.lower() for c in capabilities) or "none"


def _choose_cpu_capability():
    """(capability to import or None, why none)."""
    requested = _requested_capability()  # a misspelt name fails even without a build
    if _C is None:
        return None, LOAD_ERROR
    built, supported = BUILT_CPU_CAPABILITIES, SUPPORTED_CPU_CAPABILITIES
    if requested is not None:
        if requested not in supported or requested not in built:
            raise ValueError(
                f"{CAPABILITY_VARIABLE}={os.environ[CAPABILITY_VARIABLE]!r}: "
                + ("this CPU does not support it" if requested not in supported else "it was not built")
                + f" (this CPU supports: {_names(supported)}; built: {_names(built)})"
            )
        return requested, None
    usable = [c for c in built if c in supported]
    if not usable:
        return None, f"no CPU kernels built for this CPU (this CPU supports: {_names(supported)}; built: {_names(built)})"
    preferred = PREFERRED_CAPABILITY.get(cpu_family())
    return (preferred if preferred in usable else usable[-1]), None


def _load_cpu_kernels():
    """(the loaded module or None, why none)."""
    capability, reason = _choose_cpu_capability()
    if capability is None:
        return None, reason
    try:
        return importlib.import_module(_cpu_module(capability)), None
    except ImportError as error:
        return None, f"{type(error).__name__}: {error}"


CPU_MODULE, CPU_LOAD_ERROR = _load_cpu_kernels()
CPU_CAPABILITY = CPU_MODULE.cpu_capability if CPU_MODULE is not None else None


def _registered(dispatch_key: str) -> bool:
    if _C is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("bitcodes_ext::forward", dispatch_key)


# Read once at import: a plain dict keeps has_kernels traceable by torch.compile.
_KERNELS = {"cpu": _registered("CPU"), "cuda": _registered("CUDA")}


def has_kernels(device_type: str) -> bool:
    """Whether a compiled kernel is registered for this device type ('cpu', 'cuda')."""
    return _KERNELS.get(device_type, False)


def cuda_model():
    """The module's CUDA route rule and cost model (csrc/cuda/route.h); for bitcodes_ext.info."""
    if _C is None:
        raise RuntimeError(f"bitcodes_ext: the compiled extension is not loaded ({LOAD_ERROR})")
    return _C


def unavailable_reason(device_type: str) -> str:
    """Why there are no compiled kernels for this device type."""
    if device_type == "cpu" and CPU_LOAD_ERROR is not None:
        return CPU_LOAD_ERROR
    return LOAD_ERROR or f"the extension was built without {device_type} kernels"


_warned = False


def warn_fallback(device_type: str) -> None:
    """One clear warning per process when the pure-torch fallback stands in for the kernels."""
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"bitcodes_ext: compiled kernels unavailable for {device_type} ({unavailable_reason(device_type)}); "
        "using the slower pure-torch implementation. Reinstall with `pip install --no-build-isolation .` to build them.",
        RuntimeWarning,
        stacklevel=3,
    )

"""The CPU ops' output cache.

Outputs of 2 MB and more of the compiled CPU ops (y, bits, dx, ...) take memory that earlier
outputs freed, instead of fresh pages from the OS, whose first touch costs more than the kernel
on some machines (benchmarks/NOTES.md). The cache holds freed blocks up to
BITCODES_CPU_OUTPUT_CACHE_MB (read at the first large output; default 1024, 0 turns it off).
"""

from . import _extension


def _module():
    if _extension.CPU_MODULE is None:
        raise RuntimeError(f"the CPU kernels are not loaded: {_extension.unavailable_reason('cpu')}")
    return _extension.CPU_MODULE


def cpu_output_cache_bytes() -> int:
    """Bytes of freed outputs the cache holds for reuse (0 without CPU kernels)."""
    return 0 if _extension.CPU_MODULE is None else _extension.CPU_MODULE.cached_output_bytes()


def cpu_output_cache_limit_bytes() -> int:
    """The most the cache holds, from BITCODES_CPU_OUTPUT_CACHE_MB."""
    return _module().output_cache_limit_bytes()


def release_cpu_output_cache() -> int:
    """Frees the cached blocks to the OS, as torch.cuda.empty_cache() does on a GPU; returns the bytes freed."""
    return _module().release_cached_outputs()

"""Timing and roofline helpers shared by the benchmark scripts."""

import logging
import os
import pathlib
import platform
import time

import torch

# torch.utils.benchmark imports torch.utils.cpp_extension, which logs "No CUDA runtime is found,
# using CUDA_HOME=..." wherever no GPU is visible (with a wrong guess of CUDA_HOME here); the
# benchmarks compile nothing. Only that message is dropped.
logging.getLogger("torch.utils.cpp_extension").addFilter(lambda record: not record.getMessage().startswith("No CUDA runtime is found"))
from torch.utils import benchmark  # noqa: E402


def median_ms(fn, device, *, min_run_time=0.5, warmup=3):
    """Median ms per call after a warm-up, from torch.utils.benchmark (which syncs CUDA)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    # Timer runs at one thread unless told otherwise.
    timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def interleaved_samples(fns, device, *, rounds=3, min_run_time=0.5, progress=None):
    """Times every function `rounds` times in turn: {name: [median ms of each round]}. Drift on a
    noisy machine then hits all of them alike instead of whichever ran last, and the rounds of
    two functions can be compared pairwise."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(median_ms(fn, device, min_run_time=min_run_time))
            if progress is not None:
                progress.update(1)
    return samples


def cuda_routes():
    """The route names BITCODES_CUDA_ROUTE accepts (bitcodes_ext.info.cuda_routes(), from
    csrc/cuda/route.h): a route added there is benchmarked without editing this."""
    from bitcodes_ext import info

    return list(info.cuda_routes())


def gemm_peak_gflops(device, dtype=torch.float32, n=None, samples=3):
    """Best of a few square-GEMM measurements: a peak, so noise should not pull it down. On a GPU
    n = 8192 (1.1 TFLOP per product), since 2048 would time the launch rather than the math."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return max(2 * n**3 / (median_ms(lambda: a @ b, device, min_run_time=0.5) * 1e-3) / 1e9 for _ in range(samples))


def copy_bandwidth_gbs(device, nbytes=None, samples=3):
    """Read + write GB/s of a large device-to-device copy into preallocated memory (best of a few):
    256 MiB on the CPU, 1 GiB on a GPU (20 times an H100's or H200's 50 MB L2)."""
    nbytes = nbytes or ((1 << 30) if device.type == "cuda" else (256 << 20))
    src = torch.empty(nbytes // 4, device=device)
    src.uniform_()
    dst = torch.empty_like(src)
    return max(2 * nbytes / (median_ms(lambda: dst.copy_(src), device, min_run_time=0.5) * 1e-3) / 1e9 for _ in range(samples))


def fresh_output_ms(shape, device, dtype=torch.float32):
    """Allocating and writing a new output of this shape: a floor for any op that returns one.
    (On VMs the page faults of a fresh large allocation can cost more than the writes.)"""
    return median_ms(lambda: torch.empty(shape, device=device, dtype=dtype).fill_(1.0), device, min_run_time=0.3)


def cpu_name():
    """The CPU's model, its family, the ISA torch uses on it and the one our CPU kernels were loaded
    for, e.g. "AMD EPYC, family 25 (torch AVX512, ours AVX2)"."""
    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import bitcodes_ext  # noqa: PLC0415 (after the benchmark set BITCODES_CPU_CAPABILITY, if it does)
    from bitcodes_ext import _extension  # noqa: PLC0415

    family = _extension.cpu_family()
    ours = bitcodes_ext.backend_info()["cpu_capability"]
    return (f"{model}{f', family {family[1]}' if family else ''} "
            f"(torch {torch.backends.cpu.get_cpu_capability().upper()}, ours {ours})")


def describe(device, threads, peak, bandwidth, dtype_name):
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return dict(
        device=name, device_type=device.type, threads=threads, torch=torch.__version__, dtype=dtype_name,
        gemm_peak_gflops=peak, copy_bandwidth_gbs=bandwidth, date=time.strftime("%Y-%m-%d"),
        thp_mem_alloc=os.environ.get("THP_MEM_ALLOC_ENABLE", "0"),
        glibc_tunables=os.environ.get("GLIBC_TUNABLES", ""),
        our_output_cache_mb=our_output_cache_mb() if device.type == "cpu" else None,
    )


def our_output_cache_mb():
    """The cap of our CPU ops' cache of freed outputs (bitcodes_ext.memory): the baselines have none."""
    from bitcodes_ext import memory  # noqa: PLC0415

    return memory.cpu_output_cache_limit_bytes() >> 20

"""Bitcodes: bitcodes-pytorch (eager and torch.compile), the two-GEMM pure-torch rewrite
(bitcodes_ext.reference) and our fused kernels, side by side in one run.

    python benchmarks/bench_bitcodes.py [--quick] [--device auto|cpu|cuda] [--dtype float32]
        [--sizes 8192x64x8,16384x512x32] [--backends reference,compile,two-gemm,ours]
        [--threads 2] [--thp] [--out benchmarks/results]

Prints a table and writes <out>/<device>-<date>.{json,csv,png}. --thp turns on torch's
THP_MEM_ALLOC_ENABLE (huge pages for large CPU tensors) for every implementation alike: on
VMs where a page fault is expensive, allocating a fresh 64 MB output costs more than
computing it ("out floor ms" shows that cost).
"""

import argparse
import os
import sys

# torch reads this once, at its first large allocation: set it before importing torch.
if "--thp" in sys.argv:
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"

import torch  # noqa: E402
from bitcodes_pytorch import Bitcodes as PackageBitcodes  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import results  # noqa: E402

import bitcodes_ext  # noqa: E402
from bitcodes_ext import Bitcodes  # noqa: E402

GRID = [(8192, 64, 8), (16384, 512, 32), (16384, 1024, 64)]
QUICK_GRID = [(4096, 64, 8), (4096, 256, 32)]
# The GPU targets of issue #3: 2^20 tokens, D in {256, 512, 1024}, B in {16, 64}.
GPU_GRID = [(1 << 20, features, num_bits) for features in (256, 512, 1024) for num_bits in (16, 64)]
QUICK_GPU_GRID = [(1 << 18, 256, 16), (1 << 18, 1024, 64)]
BACKENDS = {"reference": "reference", "compile": "reference+compile", "two-gemm": "two-GEMM torch", "ours": "bitcodes_ext"}
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_sizes(text):
    try:
        return [tuple(int(v) for v in size.lower().split("x")) for size in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 8192x64x8,16384x512x32, got {text!r}")


def parse_backends(text):
    names = text.split(",")
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backends {unknown}; choose from {list(BACKENDS)}")
    return names


def work(tokens, features, num_bits, training, dtype_bytes):
    """(effective flops, floor flops, floor bytes) of one call.

    Effective flops count the two skinny GEMMs of the forward (and the backward's four in
    training): the GFLOP/s column. The floor is what any implementation must do: the logits
    GEMM (and in training u = g.W^T, dx = r.W, r^T x), and reading or writing each tensor
    once; the roofline is max(floor flops / GEMM peak, floor bytes / copy bandwidth).
    """
    T, D, B = tokens, features, num_bits
    effective = (12 if training else 4) * T * D * B
    floor_flops = (8 if training else 2) * T * D * B
    x = T * D * dtype_bytes
    floor_bytes = 2 * x + 8 * T * B + ((4 * T * B + 3 * x) if training else 0)  # x, y, bits (+ z, g, x, dx)
    return effective, floor_flops, floor_bytes


def make_step(name, features, num_bits, training, device, dtype, x):
    """A closure running one forward (eval) or forward + backward (train) of one implementation."""
    package = PackageBitcodes(features, num_bits, 1.0).to(device).train(training)
    if name in ("reference", "compile"):
        module = torch.compile(package) if name == "compile" else package
        # The package keeps float32 weights; low precision runs it the way a user would, under autocast.
        autocast = dtype in (torch.bfloat16, torch.float16)
        module_dtype = torch.float32 if autocast else dtype
        module.to(module_dtype)
        inputs = x.to(module_dtype)
    else:
        module = Bitcodes(features, num_bits, 1.0, backend="torch" if name == "two-gemm" else "native")
        module = module.to(device).train(training)
        module.load_state_dict(package.state_dict())
        module.to(dtype)
        inputs, autocast = x.to(dtype), False
    inputs = inputs.detach().requires_grad_(training)
    # The upstream gradient comes from the rest of the model: made once, outside the timed step.
    # Random, not ones, so that no implementation meets a special value. In the benchmark dtype,
    # which y has in every implementation (under autocast too), so no step pays a conversion.
    grad_y = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=autocast), torch.set_grad_enabled(training):
            y, _ = module(inputs)
        if training:
            # What an optimizer's zero_grad() does: x.grad is set, not accumulated, every step.
            inputs.grad = None
            y.backward(grad_y.to(y.dtype))

    return step


def sizes_for(device, args):
    if args.sizes:
        return args.sizes
    if device.type == "cuda":
        return QUICK_GPU_GRID if args.quick else GPU_GRID
    return QUICK_GRID if args.quick else GRID


def bench_device(device, args, progress):
    dtype = DTYPES[args.dtype]
    # The CPU kernels compute in float32 (float64 for float64); the GPU's peak is the dtype's own.
    peak_dtype = dtype if device.type == "cuda" or dtype == torch.float64 else torch.float32
    peak = harness.gemm_peak_gflops(device, peak_dtype)
    bandwidth = harness.copy_bandwidth_gbs(device)
    meta = harness.describe(device, args.threads, peak, bandwidth, args.dtype)
    meta["backend_info"] = bitcodes_ext.backend_info()
    rows, skipped = [], []
    for training in (False, True):
        mode = "train" if training else "eval"
        for tokens, features, num_bits in sizes_for(device, args):
            x = torch.randn(1, tokens, features, device=device)
            steps = {}
            for name in args.backends:
                step = make_step(name, features, num_bits, training, device, dtype, x)
                try:
                    step()
                except Exception as error:  # e.g. the package's eval runs in float32 only
                    skipped.append(f"{BACKENDS[name]} {mode} {tokens}x{features}x{num_bits}: {type(error).__name__}: {error}")
                    continue
                steps[BACKENDS[name]] = step
            rounds = harness.interleaved_samples(
                steps, device, rounds=args.rounds, min_run_time=args.min_run_time, progress=progress
            )
            effective, floor_flops, floor_bytes = work(tokens, features, num_bits, training, torch.finfo(dtype).bits // 8)
            roofline = max(floor_flops / (peak * 1e9), floor_bytes / (bandwidth * 1e9)) * 1e3
            out_floor = harness.fresh_output_ms((tokens, features), device, dtype)
            for name in rounds:
                rows.append(
                    results.row(mode, tokens, features, num_bits, name, rounds, effective, roofline, out_floor, floor_bytes, bandwidth)
                )
    return meta, rows, skipped


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto: the CPU, and CUDA when present")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--sizes", type=parse_sizes, default=None, help="TxDxB,... (default: the issues' CPU and GPU grids)")
    parser.add_argument("--backends", type=parse_backends, default=list(BACKENDS))
    parser.add_argument("--quick", action="store_true", help="a small grid and short timings: under a minute")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--thp", action="store_true", help="huge pages for large CPU tensors (all implementations)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--min-run-time", type=float, default=None)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.min_run_time = args.min_run_time or (0.1 if args.quick else 0.5)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "auto" else [args.device]
    info = bitcodes_ext.backend_info()
    for name in devices:
        if not info[f"{torch.device(name).type}_kernels"]:
            sys.exit(f"no compiled {name} kernels to benchmark: {info['load_error'] or 'not built for ' + name}")

    for name in devices:
        device = torch.device(name)
        total = 2 * len(sizes_for(device, args)) * len(args.backends) * args.rounds
        with tqdm(total=total, desc=f"{name} {args.dtype}", unit="timing", leave=False) as progress:
            meta, rows, skipped = bench_device(device, args, progress)
        print(results.text_table(meta, rows))
        for line in skipped:
            print(f"skipped: {line}")
        suffix = ("-thp" if args.thp else "") + ("-quick" if args.quick else "") + ("" if args.dtype == "float32" else f"-{args.dtype}")
        for path in results.save(meta, rows, os.path.join(args.out, f"{device.type}-{meta['date']}{suffix}")):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
